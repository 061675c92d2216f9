"""Device simulators (physiology, waveforms, PB840 poll server, IntelliVue UDP monitor, HL7v2
monitor/pump feeds, MLLP sender).

They never share code with the decoders they feed.
"""

from gateway.simulators.hl7_monitor import (
    BedFeed,
    PumpState,
    adt_admit,
    merge_streams,
    monitor_oru,
    monitor_stream,
    pump_oru,
    pump_stream,
)
from gateway.simulators.intellivue import IntellivueSimulator, connect_indication
from gateway.simulators.mllp_sender import MllpSender, ack_code
from gateway.simulators.pb840 import Pb840Simulator, VentSettings, encode_misca, encode_miscf
from gateway.simulators.physiology import SCENARIOS, Physiology, Vitals
from gateway.simulators.run import DeviceSims, SimulationStats, assign_scenarios, run_simulation, send_beds

__all__ = [
    "SCENARIOS",
    "BedFeed",
    "DeviceSims",
    "IntellivueSimulator",
    "MllpSender",
    "Pb840Simulator",
    "Physiology",
    "PumpState",
    "SimulationStats",
    "adt_admit",
    "VentSettings",
    "Vitals",
    "ack_code",
    "assign_scenarios",
    "connect_indication",
    "encode_misca",
    "encode_miscf",
    "merge_streams",
    "monitor_oru",
    "monitor_stream",
    "pump_oru",
    "pump_stream",
    "run_simulation",
    "send_beds",
]
