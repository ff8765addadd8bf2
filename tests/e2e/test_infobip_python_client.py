"""Infobip's official Python client 2.x (PyPI ``infobip-api-python-client`` 2.3.0) against a real gateway.

The client is Python 2 code. The test downloads its source distribution with pip, converts it with the 2to3
fixers (fissix, lib2to3's maintained copy) and makes the changes Python 3 needs that 2to3 cannot make:
the answer body is bytes, to be decoded before the client's ``json.JSONDecoder().decode``; and the enums'
``__init__`` guards, which name their own class and were written for the old ``enum`` backport, are
dropped, since Python 3's Enum runs ``__init__`` while the class is still being built. (``base64.encodestring``
is gone too: we authenticate with an API key, which does not use it.) Nothing else is touched: the client's
request building, answer parsing and error handling are Infobip's.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from .conftest import ALADDIN_KEY, Gateway

VERSION = "2.3.0"
ENUM_GUARD = re.compile(
    r"    def __init__\(self, value\):\n        if value not in .*\n            raise NotImplementedError\(.*\)\n"
)


@pytest.fixture(scope="module")
def infobip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The converted client's ``infobip`` package, importable for this module's tests."""
    root = tmp_path_factory.mktemp("infobip-client")
    subprocess.run([sys.executable, "-m", "pip", "download", f"infobip-api-python-client=={VERSION}",
                    "--no-deps", "--no-binary", ":all:", "-q", "-d", str(root)],
                   check=True, capture_output=True, timeout=300)
    (sdist,) = root.glob("infobip-api-python-client-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(root, filter="data")
    package = root / f"infobip-api-python-client-{VERSION}" / "infobip"
    subprocess.run([sys.executable, "-c", "import sys; from fissix.main import main; sys.exit(main('fissix.fixes'))",
                    "-w", "-n", "--no-diffs", str(package)], check=True, capture_output=True, timeout=300)
    http = package / "util" / "http.py"
    source = http.read_text()
    assert source.count("response_content = response.read()") == 1
    http.write_text(source.replace("response_content = response.read()",
                                   "response_content = response.read().decode('utf-8')"))
    for module in package.rglob("*.py"):
        text = module.read_text()
        if "(Enum):" in text:
            module.write_text(ENUM_GUARD.sub("", text))
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module("infobip")
    finally:
        sys.path.remove(str(package.parent))
        for name in [n for n in sys.modules if n == "infobip" or n.startswith("infobip.")]:
            del sys.modules[name]


def _configuration(infobip: ModuleType, gateway: Gateway) -> Any:
    configuration = importlib.import_module("infobip.util.configuration")
    return configuration.Configuration(api_key=ALADDIN_KEY, base_url=gateway.url)


def _module(name: str) -> Any:
    return importlib.import_module(name)


def test_a_bad_request_raises_the_clients_own_exception_naming_the_field(infobip: ModuleType,
                                                                          gateway: Gateway) -> None:
    clients = _module("infobip.clients")
    exception = _module("infobip.util.exception")
    To = _module("infobip.api.model.omni.To").To
    Destination = _module("infobip.api.model.omni.Destination").Destination
    OmniAdvancedRequest = _module("infobip.api.model.omni.send.OmniAdvancedRequest").OmniAdvancedRequest
    SmsData = _module("infobip.api.model.omni.send.SmsData").SmsData
    key = gateway.create_scenario([{"channel": "SMS", "from": "InfoSMS"}])["key"]

    to = To()
    to.phone_number = "41793026700"
    destination = Destination()
    destination.to = to
    sms = SmsData()
    sms.text = "x" * 4001  # over the SMS limit: wrong for the request as a whole, so a 400
    request = OmniAdvancedRequest()
    request.destinations = [destination]
    request.scenario_key = key
    request.sms = sms
    with pytest.raises(exception.ApiException) as raised:
        clients.send_advanced_omni_message(_configuration(infobip, gateway)).execute(request)
    details = raised.value.requestError.serviceException
    assert details.messageId == "BAD_REQUEST"
    assert "sms.text" in details.text


def test_a_bad_number_in_a_bulk_is_its_own_status_through_the_client(infobip: ModuleType, gateway: Gateway) -> None:
    clients = _module("infobip.clients")
    To = _module("infobip.api.model.omni.To").To
    Destination = _module("infobip.api.model.omni.Destination").Destination
    OmniAdvancedRequest = _module("infobip.api.model.omni.send.OmniAdvancedRequest").OmniAdvancedRequest
    SmsData = _module("infobip.api.model.omni.send.SmsData").SmsData
    key = gateway.create_scenario([{"channel": "SMS", "from": "InfoSMS"}])["key"]
    destinations = []
    for number in ("41793026700", "not-a-number"):
        to = To()
        to.phone_number = number
        destination = Destination()
        destination.to = to
        destinations.append(destination)
    sms = SmsData()
    sms.text = "Hello"
    request = OmniAdvancedRequest()
    request.destinations = destinations
    request.scenario_key = key
    request.sms = sms
    response = clients.send_advanced_omni_message(_configuration(infobip, gateway)).execute(request)
    assert [m.status.name for m in response.messages] == ["PENDING_ENROUTE", "REJECTED_DESTINATION"]
    assert response.bulk_id


def test_a_send_and_scenario_calls_work_through_the_client(infobip: ModuleType, gateway: Gateway) -> None:
    clients = _module("infobip.clients")
    Scenario = _module("infobip.api.model.omni.scenarios.Scenario").Scenario
    Step = _module("infobip.api.model.omni.scenarios.Step").Step
    To = _module("infobip.api.model.omni.To").To
    Destination = _module("infobip.api.model.omni.Destination").Destination
    OmniAdvancedRequest = _module("infobip.api.model.omni.send.OmniAdvancedRequest").OmniAdvancedRequest
    SmsData = _module("infobip.api.model.omni.send.SmsData").SmsData
    configuration = _configuration(infobip, gateway)

    step = Step()
    step.channel = "SMS"
    step.from_ = "InfoSMS"
    scenario = Scenario()
    scenario.name = "through the Python client"
    scenario.flow = [step]
    scenario.default_scenario = True
    created = clients.create_scenario(configuration).execute(scenario)
    assert created.key and created.name == "through the Python client"
    assert created.default_scenario is True
    read = clients.get_specific_scenario(configuration).execute(created.key)
    assert read.key == created.key and read.default_scenario is True
    assert [s.channel for s in read.flow] == ["SMS"]

    to = To()
    to.phone_number = "41793026700"
    destination = Destination()
    destination.to = to
    sms = SmsData()
    sms.text = "Hello from the official client"
    request = OmniAdvancedRequest()
    request.destinations = [destination]
    request.sms = sms
    response = clients.send_advanced_omni_message(configuration).execute(request)
    (message,) = response.messages
    assert message.message_id
    assert message.status.group_name == "PENDING" and message.status.name == "PENDING_ENROUTE"
    assert message.to.phone_number == "41793026700"
