"""The edge node process: CLI, settings, MLLP and device listeners, inbox, simulators, composition root."""
