"""models/nodelay.py: multiprocessing's TCP connections send without Nagle's delay."""

import socket
import threading
from multiprocessing import connection

from models import nodelay


def _nodelay(conn) -> int:
    sock = socket.socket(fileno=conn.fileno())
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.detach()


def test_both_ends_of_a_manager_style_connection_get_tcp_nodelay():
    nodelay.enable()
    nodelay.enable()  # twice is once
    listener = connection.Listener(("127.0.0.1", 0), authkey=b"k")
    accepted = {}
    thread = threading.Thread(target=lambda: accepted.setdefault("conn", listener.accept()))
    thread.start()
    client = connection.Client(listener.address, authkey=b"k")
    thread.join(timeout=60)
    server = accepted["conn"]
    try:
        assert _nodelay(client) and _nodelay(server)
        client.send_bytes(b"x" * 40_000)  # over 16 KiB: header and body in two writes
        assert server.recv_bytes() == b"x" * 40_000
    finally:
        client.close()
        server.close()
        listener.close()


def test_a_unix_socket_is_left_alone():
    left, right = connection.Pipe()
    assert nodelay.set_nodelay(left) is False
    left.close()
    right.close()
