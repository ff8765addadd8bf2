// An SMS centre for omnirelay's SMPP tests, on node-smpp (npm `smpp`): a protocol stack written
// independently of ours, so the tests exercise a real peer rather than a mock.
//
//   node smsc.js [port]            (or SMSC_PORT; 0 = any free port, printed as "listening <port>")
//
// Environment:
//   SMSC_SYSTEM_ID / SMSC_PASSWORD   the only credentials accepted (default omni / secret)
//   SMSC_LOG             file that receives one JSON line per PDU received or DLR sent (none when unset)
//   SMSC_TPS             submit_sm accepted per second (sliding 1 s window); more get ESME_RTHROTTLED
//   SMSC_FAIL            regular expression on destination_addr: the DLR says UNDELIV err:001 (default 0$)
//   SMSC_REJECT          regular expression on destination_addr: submit_sm_resp ESME_RINVDSTADR (default none)
//   SMSC_DLR_DELAY_MS    delay before a DLR is sent (default 0)
//   SMSC_DLR_TLVS        0 = receipts carry the text only, without receipted_message_id / message_state
//   SMSC_ID_START        first message id (default 1000); ids count up from it
//   SMSC_ID_HEX          1 = message ids in hex (lower case) in submit_sm_resp and receipts
//   SMSC_RESP_DELAY_MS   delay before each submit_sm_resp (the PDU is recorded, i.e. taken, at once)
//   SMSC_ENQUIRE_MS      the SMSC sends enquire_link to each bound session this often (default never)
//   SMSC_ANSWER_FIRST    answer only this many submit_sm (per process); later ones are recorded as taken
//                        ("held": true, with their id) and never answered, and get no DLR
//   SMSC_UNBIND_MS       the SMSC sends unbind to the first bound session this long after its bind and
//                        records whether unbind_resp came back before the connection closed
//
// DLRs are queued per system_id: one due while no session of that system_id is bound waits for the next
// bind, and one sent but not acknowledged (deliver_sm_resp) when its session dropped is sent again, like a
// real SMSC. So a gateway killed between submit and receipt gets the receipt after it binds again.
//
// Mobile-originated messages (MO): the test writes one JSON command a line on stdin.
//   {"op":"mo","id":"m1","source":"4917…","destination":"4915…","data_coding":0,"esm_class":0,
//    "short_message":"<hex>","tlvs":{"sar_msg_ref_num":7,"message_payload":"<hex>",…}}
//       sends a deliver_sm (queued like a DLR while nobody is bound, sent again when its session drops before
//       deliver_sm_resp or when the resp has an error status other than ESME_RX_P_APPN); recorded as
//       {"command":"mo","id":…}, its answer as {"command":"mo_resp","id":…,"status":…}
//   {"op":"resend","id":"m1"}   sends MO m1 again although it was acknowledged (an SMSC that lost the resp)
'use strict';

const fs = require('fs');
const smpp = require('smpp');

// Keep short_message and the time strings as received: the tests check the raw octets and the strings.
for (const command of ['submit_sm', 'deliver_sm']) {
  const params = smpp.commands[command].params;
  params.short_message.filter = undefined;
  params.validity_period.filter = undefined;
  params.schedule_delivery_time.filter = undefined;
}
smpp.tlvs.message_payload.filter = undefined; // MO payloads are sent as the octets the test gives

const env = process.env;
const port = Number(process.argv[2] || env.SMSC_PORT || 2775);
const systemId = env.SMSC_SYSTEM_ID || 'omni';
const password = env.SMSC_PASSWORD || 'secret';
const tps = Number(env.SMSC_TPS || 0);
const failPattern = new RegExp(env.SMSC_FAIL || '0$');
const rejectPattern = env.SMSC_REJECT ? new RegExp(env.SMSC_REJECT) : null;
const dlrDelay = Number(env.SMSC_DLR_DELAY_MS || 0);
const dlrTlvs = env.SMSC_DLR_TLVS !== '0';
const idHex = env.SMSC_ID_HEX === '1';
const respDelay = Number(env.SMSC_RESP_DELAY_MS || 0);
const enquireEvery = Number(env.SMSC_ENQUIRE_MS || 0);
const answerFirst = env.SMSC_ANSWER_FIRST === undefined ? Infinity : Number(env.SMSC_ANSWER_FIRST);
const unbindAfter = Number(env.SMSC_UNBIND_MS || 0);
let nextId = Number(env.SMSC_ID_START || 1000);
let answeredSubmits = 0;
let unbindSent = false;

// Written synchronously, before the answer goes out: once the ESME has an answer, the record is on file.
const log = env.SMSC_LOG ? fs.openSync(env.SMSC_LOG, 'a') : null;
// Counted always, printed on SIGTERM: a bench checks totals without the PDU log.
const counts = { submit_sm: 0, accepted: 0, throttled: 0, dlr: 0, deliver_sm_resp: 0, mo: 0, mo_resp: 0 };
function record(entry) {
  if (entry.command === 'submit_sm') {
    counts.submit_sm++;
    if (entry.status === 0) counts.accepted++;
    if (entry.status === smpp.ESME_RTHROTTLED) counts.throttled++;
  } else if (entry.command in counts) {
    counts[entry.command]++;
  }
  if (log !== null) fs.writeSync(log, JSON.stringify(entry) + '\n');
}

const sessions = new Map(); // system_id -> Set of bound sessions that take deliver_sm
const queued = new Map(); // system_id -> DLRs waiting for a bound session
const accepted = []; // times of recently accepted submit_sm, for SMSC_TPS

function stamp(date) {
  const p = (n) => String(n).padStart(2, '0');
  return p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate()) +
    p(date.getUTCHours()) + p(date.getUTCMinutes());
}

function throttled() {
  if (!tps) return false;
  const now = Date.now();
  while (accepted.length && accepted[0] <= now - 1000) accepted.shift();
  if (accepted.length >= tps) return true;
  accepted.push(now);
  return false;
}

function sendDlr(owner, dlr) {
  const bound = [...(sessions.get(owner) || [])];
  if (!bound.length) {
    record({ command: 'dlr_queued', id: dlr.id });
    if (!queued.has(owner)) queued.set(owner, []);
    queued.get(owner).push(dlr);
    return;
  }
  const session = bound[Math.floor(Math.random() * bound.length)];
  const options = {
    source_addr_ton: 1, source_addr_npi: 1, source_addr: dlr.destination,
    dest_addr_ton: dlr.sourceTon, dest_addr_npi: dlr.sourceNpi, destination_addr: dlr.source,
    esm_class: 0x04, data_coding: 0, short_message: Buffer.from(dlr.text, 'latin1'),
  };
  if (dlrTlvs) {
    options.receipted_message_id = dlr.id;
    options.message_state = dlr.state;
  }
  let answered = false;
  session.unacked.add(dlr);
  const sent = session.send(new smpp.PDU('deliver_sm', options), (resp) => {
    answered = true;
    session.unacked.delete(dlr);
    record({ command: 'deliver_sm_resp', id: dlr.id, status: resp.command_status });
    if (resp.command_status !== 0) setTimeout(() => sendDlr(owner, dlr), 200);
  });
  if (sent === false && !answered) {
    session.unacked.delete(dlr);
    sendDlr(owner, dlr); // the socket is gone already: queue it for another bind
    return;
  }
  record({ command: 'dlr', id: dlr.id, stat: dlr.stat, destination: dlr.destination });
}

function sendMo(owner, mo) {
  const bound = [...(sessions.get(owner) || [])];
  if (!bound.length) {
    record({ command: 'mo_queued', id: mo.id });
    if (!queued.has(owner)) queued.set(owner, []);
    queued.get(owner).push(mo);
    return;
  }
  const session = bound[Math.floor(Math.random() * bound.length)];
  const options = {
    source_addr_ton: 1, source_addr_npi: 1, source_addr: mo.source,
    dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: mo.destination,
    esm_class: mo.esm_class || 0, data_coding: mo.data_coding || 0,
    short_message: Buffer.from(mo.short_message || '', 'hex'),
  };
  for (const [name, value] of Object.entries(mo.tlvs || {})) {
    options[name] = name === 'message_payload' ? Buffer.from(value, 'hex') : value;
  }
  let answered = false;
  session.unacked.add(mo);
  const sent = session.send(new smpp.PDU('deliver_sm', options), (resp) => {
    answered = true;
    session.unacked.delete(mo);
    record({ command: 'mo_resp', id: mo.id, status: resp.command_status });
    // ESME_RX_P_APPN (0x65) is permanent: the message is dropped; any other error is tried again
    const again = resp.command_status !== 0 && resp.command_status !== smpp.ESME_RX_P_APPN;
    if (again) setTimeout(() => sendMo(owner, mo), 200);
  });
  if (sent === false && !answered) {
    session.unacked.delete(mo);
    sendMo(owner, mo);
    return;
  }
  record({ command: 'mo', id: mo.id });
}

function sendItem(owner, item) {
  if (item.kind === 'mo') sendMo(owner, item);
  else sendDlr(owner, item);
}

function flushQueued(owner) {
  const waiting = queued.get(owner) || [];
  queued.delete(owner);
  for (const item of waiting) sendItem(owner, item);
}

const mos = new Map(); // id -> the MO command, for "resend"
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch (e) {
    return;
  }
  if (command.op === 'mo') {
    const mo = { ...command, kind: 'mo' };
    mos.set(mo.id, mo);
    sendMo(systemId, mo);
  } else if (command.op === 'resend' && mos.has(command.id)) {
    sendMo(systemId, mos.get(command.id));
  }
});

const server = smpp.createServer((session) => {
  let owner = null;
  session.unacked = new Set();
  session.on('error', () => {});
  let enquirer = null;
  session.on('close', () => {
    if (enquirer) clearInterval(enquirer);
    if (owner && sessions.has(owner)) sessions.get(owner).delete(session);
    // Sent but never acknowledged: the ESME may not have stored it, so it comes again.
    const again = [...session.unacked];
    session.unacked.clear();
    for (const item of again) sendItem(owner, item);
  });

  function bind(pdu) {
    const ok = pdu.system_id === systemId && pdu.password === password;
    record({ command: pdu.command, system_id: pdu.system_id, system_type: pdu.system_type,
      interface_version: pdu.interface_version, status: ok ? 0 : smpp.ESME_RBINDFAIL });
    if (!ok) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'node-smsc' }));
    if (unbindAfter > 0 && !unbindSent) {
      unbindSent = true;
      setTimeout(() => {
        let answered = false;
        session.on('close', () => { if (!answered) record({ command: 'unbind_unanswered' }); });
        record({ command: 'unbind_sent' });
        session.send(new smpp.PDU('unbind', {}), (resp) => {
          answered = true;
          record({ command: 'unbind_resp', status: resp.command_status });
          session.close();
        });
      }, unbindAfter);
    }
    if (enquireEvery > 0) {
      enquirer = setInterval(() => {
        session.send(new smpp.PDU('enquire_link', {}), (resp) => {
          record({ command: 'enquire_link_resp', status: resp.command_status });
        });
      }, enquireEvery);
    }
    if (pdu.command !== 'bind_transmitter') {
      owner = pdu.system_id;
      if (!sessions.has(owner)) sessions.set(owner, new Set());
      sessions.get(owner).add(session);
      flushQueued(owner);
    } else {
      owner = owner || pdu.system_id;
    }
  }
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('bind_receiver', bind);

  session.on('enquire_link', (pdu) => {
    record({ command: 'enquire_link' });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    record({ command: 'unbind' });
    if (owner && sessions.has(owner)) sessions.get(owner).delete(session);
    session.send(pdu.response());
    session.close();
  });

  session.on('submit_sm', (pdu) => {
    const entry = {
      command: 'submit_sm', seq: pdu.sequence_number, system_id: owner,
      source_addr: pdu.source_addr, source_addr_ton: pdu.source_addr_ton, source_addr_npi: pdu.source_addr_npi,
      destination_addr: pdu.destination_addr, dest_addr_ton: pdu.dest_addr_ton, dest_addr_npi: pdu.dest_addr_npi,
      data_coding: pdu.data_coding, esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery,
      validity_period: pdu.validity_period, short_message: Buffer.from(pdu.short_message || []).toString('hex'),
    };
    if (!owner) {
      entry.status = smpp.ESME_RINVBNDSTS;
      record(entry);
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    if (rejectPattern && rejectPattern.test(pdu.destination_addr)) {
      entry.status = smpp.ESME_RINVDSTADR;
      record(entry);
      session.send(pdu.response({ command_status: smpp.ESME_RINVDSTADR }));
      return;
    }
    if (throttled()) {
      entry.status = smpp.ESME_RTHROTTLED;
      record(entry);
      session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
      return;
    }
    const n = nextId++;
    const id = idHex ? n.toString(16) : String(n);
    entry.status = 0;
    entry.message_id = id;
    if (answeredSubmits >= answerFirst) {
      entry.held = true;
      record(entry);
      return;
    }
    answeredSubmits++;
    record(entry);
    if (respDelay > 0) setTimeout(() => session.send(pdu.response({ message_id: id })), respDelay);
    else session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 0x03) {
      const failed = failPattern.test(pdu.destination_addr);
      const now = stamp(new Date());
      const stat = failed ? 'UNDELIV' : 'DELIVRD';
      const dlr = {
        id, stat, state: failed ? 5 : 2,
        source: pdu.source_addr, sourceTon: pdu.source_addr_ton, sourceNpi: pdu.source_addr_npi,
        destination: pdu.destination_addr,
        text: `id:${id} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${now} done date:${now} ` +
          `stat:${stat} err:${failed ? '001' : '000'} text:`,
      };
      if (dlrDelay > 0) setTimeout(() => sendDlr(owner, dlr), dlrDelay);
      else sendDlr(owner, dlr);
    }
  });

  session.on('unknown', (pdu) => {
    record({ command: 'unknown', command_id: pdu.command_id });
    session.send(pdu.response());
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function stop() {
  process.stdout.write('counts ' + JSON.stringify(counts) + '\n', () => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
