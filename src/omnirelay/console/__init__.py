"""The operator web console: login, overview charts, message search and timelines, scenarios, sandbox rules."""

from omnirelay.console.routes import ConsoleRoutes

__all__ = ["ConsoleRoutes"]
