"""Shared fixtures: the real FashionMNIST, loaded once per test session; a throwaway PostgreSQL server."""

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from course_lib.data import FashionMNISTSplits, load_fashion_mnist


@pytest.fixture(scope="session")
def fashion() -> FashionMNISTSplits:
    """The real FashionMNIST (from the Debian package or the data cache), on the CPU."""
    return load_fashion_mnist()


@pytest.fixture(scope="session")
def fashion_batch(fashion):
    """The first 1024 training images and labels, as the seed's probes use."""
    return fashion.train_images[:1024], fashion.train_labels[:1024]


@pytest.fixture(scope="session")
def small_fashion(fashion) -> FashionMNISTSplits:
    """A 4k/1k/1k slice of the real data for quick training tests."""
    return FashionMNISTSplits(
        train_images=fashion.train_images[:4000], train_labels=fashion.train_labels[:4000],
        val_images=fashion.val_images[:1000], val_labels=fashion.val_labels[:1000],
        test_images=fashion.test_images[:1000], test_labels=fashion.test_labels[:1000],
    )


@pytest.fixture(scope="session")
def canary_dir(tmp_path_factory, worker_id) -> Path:
    """One canary folder for every batch of the test run, pytest-xdist's workers included (the canary
    locks it): each assignment's canary is graded once."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if worker_id != "master" else base) / "canary"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _seed_each_test():
    """Each test starts from the same torch seed, so statistical assertions are reproducible."""
    torch.manual_seed(0)


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def host_listener() -> socket.socket:
    """A listening socket on the host's 127.0.0.1, on a port below the ephemeral range.

    A sandboxed kernel has listeners of its own on ephemeral ports (ipykernel's iopub pipe binds
    127.0.0.1:*), so a host port from that range could name one of them and a connection from the
    kernel would succeed without reaching the host."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(low - 1, 1024, -1):
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            listener.close()
            continue
        listener.listen()
        return listener
    raise OSError("no free port below the ephemeral range")


def postgres_skip_reason() -> str:
    """Why PostgreSQL tests cannot run here ('' when they can)."""
    from grading.sandbox.launcher import bwrap_available

    if PG_BIN is None:
        return "PostgreSQL NOT TESTED: apt package postgresql missing (scripts/install.sh installs it)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "PostgreSQL NOT TESTED: psycopg2-binary missing (requirements.txt)"
    if not bwrap_available():
        return "PostgreSQL NOT TESTED: bubblewrap missing"
    return ""


class PostgresServer:
    """A running throwaway server: ``database(name)`` creates a database and returns its URL."""

    def __init__(self, port: int) -> None:
        self.port = port

    def database(self, name: str) -> str:
        """Create the database ``name`` (once) and return its SQLAlchemy URL."""
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p",
                        str(self.port), name], check=True, capture_output=True)
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1, run as the postgres user, for the whole session."""
    if postgres_skip_reason():
        pytest.skip(postgres_skip_reason())
    data = Path(tempfile.mkdtemp(prefix="grading-pg-"))  # in /tmp: pytest's folders are private to root
    shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(PG_BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                            "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield PostgresServer(port)
    finally:
        subprocess.run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(postgres_server, request):
    """A fresh gradebook database on the session's PostgreSQL server, one per test module; yields its URL."""
    return postgres_server.database("gradebook_" + request.module.__name__.rsplit(".", 1)[-1].lower())
