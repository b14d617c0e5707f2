#!/usr/bin/python3
"""Sends one QMP command to a QEMU machine and prints the reply's "return" as JSON.

Usage: qmp.py SOCKET COMMAND [ARGUMENTS-JSON]
e.g.   qmp.py /tmp/vm/qmp.sock stop        (pause the vCPUs: QEMU drains the disks first)
       qmp.py /tmp/vm/qmp.sock cont
The tests use it as a machine's freeze and thaw hooks and to look at a machine's state.
Exit status: 0 on a return, 1 on a QMP error or when the socket does not answer.
"""
import json
import socket
import sys


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    path, command = sys.argv[1], sys.argv[2]
    arguments = json.loads(sys.argv[3]) if len(sys.argv) == 4 else None
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        f = s.makefile("rwb")
    except OSError as e:
        print(f"qmp.py: {path}: {e}", file=sys.stderr)
        return 1

    def send(cmd, args=None):
        msg = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                raise OSError("QEMU closed the connection")
            reply = json.loads(line)
            if "return" in reply or "error" in reply:
                return reply

    try:
        json.loads(f.readline())  # the greeting
        send("qmp_capabilities")
        reply = send(command, arguments)
    except (OSError, ValueError) as e:
        print(f"qmp.py: {command}: {e}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"qmp.py: {command}: {reply['error'].get('desc')}", file=sys.stderr)
        return 1
    print(json.dumps(reply["return"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
