"""Device-feed clients (serial-over-TCP poll/response ventilators)."""

from gateway.devices.pb840_client import DeviceStatusEvent, Pb840Client

__all__ = ["DeviceStatusEvent", "Pb840Client"]
