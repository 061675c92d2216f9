"""Device-feed clients: PB840 serial-over-TCP poll/response, IntelliVue LAN Data Export (UDP)."""

from gateway.devices.intellivue_client import IntellivueClient, MonitorSession, discover_monitors
from gateway.devices.pb840_client import DeviceStatusEvent, Pb840Client

__all__ = ["DeviceStatusEvent", "IntellivueClient", "MonitorSession", "Pb840Client", "discover_monitors"]
