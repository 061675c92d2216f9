"""``vitalgate profiles list|check`` and ``vitalgate simulate`` through Typer's CliRunner."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app

runner = CliRunner()


def test_profiles_list_json_names_every_vendor() -> None:
    result = runner.invoke(app, ["profiles", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert {"medtronic-pb840", "medtronic-pb980", "baxter-spectrum-iq", "philips-intellivue-piic",
            "philips-intellivue-mp"} <= set(rows)
    assert rows["medtronic-pb840"]["transport"] == "pb840-serial-tcp"
    assert rows["philips-intellivue-mp"]["transport"] == "intellivue-udp"
    assert rows["medtronic-pb840"]["stale_timeout_s"] == 10.0


def test_profiles_list_table() -> None:
    result = runner.invoke(app, ["profiles", "list"])
    assert result.exit_code == 0 and "medtronic-pb840" in result.stdout


def test_profiles_check_shipped_ok() -> None:
    result = runner.invoke(app, ["profiles", "check"])
    assert result.exit_code == 0 and "profile(s) OK" in result.stdout


def test_profiles_check_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "broken-monitor.toml"
    bad.write_text('vendor = "X"\nmanufacturer = "X"\nmodels = ["A"]\ndevice_type = "monitor"\n'
                   '[transport]\nkind = "mllp"\n[timing]\nreporting_interval_s = 5\nstale_timeout_s = 1\n'
                   '[coding]\ncode_system = "MDC"\nunit_system = "MDC"\n'
                   '[[codes]]\nkey = "hr"\nlabel = "HR"\ndisplay = "HR"\ncode = "1"\nunit = "bpm"\n')
    result = runner.invoke(app, ["profiles", "check", str(bad)])
    assert result.exit_code == 1
    assert "broken-monitor.toml" in result.stderr and "stale_timeout_s" in result.stderr


class _Ack(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        buf = b""
        while chunk := self.request.recv(65536):
            buf += chunk
            while b"\x1c\r" in buf:
                frame, buf = buf.split(b"\x1c\r", 1)
                msh = frame[frame.index(b"\x0b") + 1 :].split(b"\r", 1)[0].split(b"|")
                self.server.messages.append(frame)  # type: ignore[attr-defined]
                ack = b"MSH|^~\\&|VG||||20260101||ACK|A|P|2.6\rMSA|CA|" + msh[9] + b"\r"
                self.request.sendall(b"\x0b" + ack + b"\x1c\r")


@pytest.fixture
def ack_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Ack)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_simulate_sends_to_the_configured_mllp_port(ack_server, monkeypatch) -> None:
    port = ack_server.server_address[1]
    monkeypatch.setenv("VITALGATE_MLLP_HOST", "127.0.0.1")
    monkeypatch.setenv("VITALGATE_MLLP_PORT", str(port))
    result = runner.invoke(app, ["simulate", "--beds", "2", "--duration", "1.2", "--scenario", "sepsis",
                                 "--waveforms"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["beds"] == 2 and stats["scenarios"] == {"1": "sepsis", "2": "sepsis"}
    assert stats["acks"].get("CA", 0) == stats["messages_sent"] >= 6  # 2 ADT + 2 monitors x 2 s + 2 pumps
    assert any(b"|NA|131330^MDC_ECG_ELEC_POTL_II" in m for m in ack_server.messages)


def test_simulate_explicit_target_and_pb840(ack_server) -> None:
    port = ack_server.server_address[1]
    result = runner.invoke(app, ["simulate", "--beds", "1", "--duration", "0.5", "--mllp",
                                 f"127.0.0.1:{port}", "--pb840-listen", "127.0.0.1:0",
                                 "--intellivue-listen", "127.0.0.1:0", "--pumps", "2", "--no-hl7-monitors"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert len(stats["pb840_ports"]) == 1 and stats["pb840_ports"][0] > 0
    assert len(stats["intellivue_ports"]) == 1
    assert stats["devices_setting"].startswith("pb840@127.0.0.1:") and "intellivue@" in stats["devices_setting"]
    senders = [m.split(b"|")[2] for m in ack_server.messages]
    assert senders.count(b"SIM_ADT") == 1 and sum(s.startswith(b"PAT_DEVICE_BAXTER") for s in senders) == 2


@pytest.mark.parametrize("args, message", [
    (["--scenario", "zombie"], "unknown scenario"),
    (["--mllp", "host:notaport"], "not HOST:PORT"),
    (["--beds", "0"], "beds"),
])
def test_simulate_refuses_bad_options(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", "--duration", "0.2", *args])
    assert result.exit_code == 2
    assert message in result.output
