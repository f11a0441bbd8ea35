"""`--ray ADDRESS` that nothing answers on fails at once with a message naming it (ray.init
alone retries an unreachable address for minutes)."""
from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'simsearch[ray]'")

from simsearch.cluster import connect  # noqa: E402
from simsearch.errors import SimsearchError  # noqa: E402


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with block ends


@pytest.mark.parametrize("prefix", ["", "ray://"])
def test_an_unreachable_address_is_refused_at_once(prefix):
    address = f"{prefix}127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(SimsearchError, match="cannot reach a Ray cluster at") as e:
        connect(address)
    assert address in str(e.value) and time.monotonic() - start < 10


@pytest.mark.parametrize("address", ["nonsense", "host:", ":6379", "host:port"])
def test_a_malformed_address_is_named(address):
    with pytest.raises(SimsearchError, match="not HOST:PORT"):
        connect(address)


def test_the_cli_refuses_it_before_making_an_index_folder(tmp_path):
    from click.testing import CliRunner

    from conftest import write_pictures
    from simsearch.cli import main
    write_pictures(tmp_path / "photos", 2)
    out = CliRunner().invoke(main, ["index", str(tmp_path / "photos"), "--index",
                                    str(tmp_path / "idx"), "--ray", f"127.0.0.1:{_closed_port()}"])
    assert out.exit_code == 1 and "cannot reach a Ray cluster" in out.output
    assert not (tmp_path / "idx").exists()
