"""A network cut between the main process and the server (a loopback proxy the test controls).

Connections are dropped mid-flight, new ones refused, then the link comes
back: every write arrives exactly once, and both sides converge.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.server.testing import run_server


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""


T = 60.0


class Proxy:
    """Forwards 127.0.0.1:port → target; ``cut()`` resets every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                client.close()  # RST: the network is down
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "srv"
    data.mkdir()
    with run_server(data, app_id="demo") as (url, _p):
        yield url


def test_network_cut_converges(tmp_path: Path, server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    proxy = Proxy(port)
    try:
        app = App(
            AppConfiguration(
                "demo",
                f"http://127.0.0.1:{proxy.port}",
                base_file_path=str(tmp_path / "a"),
                long_poll_seconds=2,
                request_timeout=5,
            )
        )
        main = Realm(
            Configuration.flexible_sync(
                app.log_in(Credentials.anonymous()), [Item], path=str(tmp_path / "m.realm")
            )
        )
        with main.subscriptions.update() as subs:
            subs.add(main.all(Item))
        main.subscriptions.wait_for_synchronization(timeout=T)
        dev_app = App(
            AppConfiguration(
                "demo", server, base_file_path=str(tmp_path / "b"), long_poll_seconds=2
            )
        )
        device = Realm(
            Configuration.flexible_sync(
                dev_app.log_in(Credentials.anonymous()), [Item], path=str(tmp_path / "d.realm")
            )
        )
        with device.subscriptions.update() as subs:
            subs.add(device.all(Item))
        device.subscriptions.wait_for_synchronization(timeout=T)
        for round_ in range(3):
            for i in range(10):
                with main.write():
                    main.add(Item(name=f"m{round_}-{i}"))
                if i == 4:
                    proxy.cut()  # mid-stream: in-flight uploads and long-polls die
            with device.write():
                device.add(Item(name=f"d{round_}"))
            assert main.sync_session.connection_state.value in (
                "disconnected",
                "connecting",
                "connected",
            )
            proxy.restore()
        main.sync_session.wait_for_upload(timeout=T)
        device.sync_session.wait_for_upload(timeout=T)
        device.sync_session.wait_for_download(timeout=T)
        main.sync_session.wait_for_download(timeout=T)
        names_main = sorted(i.name for i in main.all(Item))
        names_dev = sorted(i.name for i in device.all(Item))
        assert names_main == names_dev
        assert len(names_main) == len(set(names_main)) == 33
        main.close()
        device.close()
    finally:
        proxy.close()
