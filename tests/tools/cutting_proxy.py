#!/usr/bin/env python3
"""A TCP proxy that cuts every connection through it at random moments (a flaky network).

Usage: cutting_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT MIN_S MAX_S SEED
Each accepted connection is forwarded to the target and closed abruptly (both sides) after a
random time in [MIN_S, MAX_S]; MAX_S 0 never cuts. Prints "cut N" for every cut. Runs until
killed."""
import random
import socket
import sys
import threading

listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lo, hi, seed = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
rng = random.Random(seed)
cuts = 0
lock = threading.Lock()


def pump(a, b):
    try:
        while True:
            data = a.recv(1 << 16)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client):
    global cuts
    try:
        upstream = socket.create_connection((host, port))
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
    if hi > 0:
        with lock:
            delay = rng.uniform(lo, hi)
        timer = threading.Event()
        timer.wait(delay)
        for s in (client, upstream):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with lock:
            cuts += 1
            print(f"cut {cuts}", flush=True)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(16)
print("proxy ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
