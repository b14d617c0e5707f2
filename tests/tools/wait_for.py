#!/usr/bin/python3
"""Polls a JSON HTTP resource until a condition over it holds; one process for the whole wait.

Usage: wait_for.py URL TOKEN EXPR [TIMEOUT_S] [INTERVAL_S]
GETs URL (with "Authorization: Bearer TOKEN" unless TOKEN is "") every INTERVAL_S (default
0.1) and evaluates the Python expression EXPR with the parsed body as j. A true value (or a
non-empty string) ends the wait: it is printed (a string as it is) and the exit status is 0.
The expression may call stop(msg) to give up at once (a state from which the condition can no
longer come true). Exit status 1 on a timeout (default 30 s) or stop(), with the last body on
stderr; failed requests are retried until the timeout."""
import json
import sys
import time
import urllib.request


class Stop(Exception):
    pass


def stop(msg):
    raise Stop(msg)


def main():
    url, token, expr = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    code = compile(expr, "EXPR", "eval")
    headers = {"Authorization": "Bearer " + token} if token else {}
    deadline = time.monotonic() + timeout
    body, why = None, "timed out"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
                body = r.read().decode()
            value = eval(code, {"stop": stop, "json": json, "j": json.loads(body)})
        except Stop as e:
            why = str(e)
            break
        except OSError as e:  # the server restarting, or an HTTP error
            body, value = str(e), None
        if value:
            print(value)
            return 0
        time.sleep(interval)
    print(f"wait_for {url}: {why} waiting for: {expr}\nlast answer: {body}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
