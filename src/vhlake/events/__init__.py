"""The validation event: its model, JSON schema, and the publishers that hand events to the event log."""

from vhlake.events.model import EVENT_TYPES, EventType, ValidationEvent, ValidationPayload

__all__ = ["EVENT_TYPES", "EventType", "ValidationEvent", "ValidationPayload"]
