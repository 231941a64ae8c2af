"""``stackcue ctl CMD``: send the daemon one command over MQTT and wait for its answer in the retained state.

Over MQTT rather than a local socket so the CLI, the phone page and the button take one road (the command topic
and its ACL) and the answer is the one every reader sees (``last_command`` of ``<prefix>/state``). Exit status:
0 accepted, 1 refused (the reason is printed), 2 no answer within ``--wait`` seconds, or a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid

from .controls import COMMANDS, Refusal, parse_command

EXIT_OK, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 2
log = logging.getLogger("stackcue.ctl")
log.addHandler(logging.NullHandler())  # the link's status is printed once, in the answer line, not logged
log.propagate = False


def add_parser(sub) -> None:
    c = sub.add_parser("ctl", help="control the running daemon: start, pause, resume, stop, recalibrate, mute")
    c.add_argument("cmd", choices=COMMANDS, metavar="CMD", help=" | ".join(COMMANDS))
    c.add_argument("--minutes", type=float, help="mute: for this many minutes (0 turns the cues back on)")
    c.add_argument("--wait", type=float, default=3.0, help="seconds to wait for the daemon's answer (default 3)")
    c.add_argument("--config", metavar="FILE", help="configuration file (its [mqtt] section and runner id)")


def cmd_ctl(args: argparse.Namespace) -> int:
    from .config import load_config
    from .mqtt_connection import LinkStatus, new_client
    from .topics import TOPICS

    cfg = load_config(args.config)
    payload: dict = {"cmd": args.cmd, "id": uuid.uuid4().hex[:12], "from": "cli"}
    if args.cmd == "mute":
        m = 10.0 if args.minutes is None else args.minutes
        payload["minutes"] = int(m) if m.is_integer() else m
    elif args.minutes is not None:
        print(f"stackcue ctl: --minutes is for mute, not {args.cmd}", file=sys.stderr)
        return EXIT_NO_ANSWER
    parsed = parse_command(payload, "cli", cfg["control"]["mute_max_min"])
    if isinstance(parsed, Refusal):  # refused before it is sent (the daemon would say the same)
        print(f"stackcue ctl: {args.cmd} refused: {parsed.reason}", file=sys.stderr)
        return EXIT_REFUSED
    s = cfg.mqtt_settings()
    link = LinkStatus(s, log)
    answer: dict = {}
    got = threading.Event()
    subscribed = threading.Event()
    state_topic, command_topic = s.topic("state"), s.topic("command")

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if link.connack(reason_code):
            client.subscribe(state_topic, qos=TOPICS["state"].qos)

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        if not subscribed.is_set():
            subscribed.set()
            client.publish(command_topic, json.dumps(payload), qos=TOPICS["command"].qos, retain=False)

    def on_message(client, userdata, msg) -> None:
        try:
            state = json.loads(msg.payload)
        except ValueError:
            return
        last = state.get("last_command") if isinstance(state, dict) else None
        if isinstance(last, dict) and last.get("id") == payload["id"]:
            answer.update(state)
            got.set()

    client = new_client(s, f"stackcue-ctl-{uuid.uuid4().hex[:8]}", clean_session=True, link=link)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    deadline = time.monotonic() + max(0.1, args.wait)
    try:
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()
        got.wait(max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
    if not got.is_set():
        where = "" if subscribed.is_set() else f" (MQTT: {link.text})"
        print(f"stackcue ctl: {args.cmd}: no answer from the daemon within {args.wait:g} s{where}", file=sys.stderr)
        return EXIT_NO_ANSWER
    last = answer["last_command"]
    if not last.get("ok"):
        print(f"stackcue ctl: {args.cmd} refused: {last.get('reason')}", file=sys.stderr)
        return EXIT_REFUSED
    extra = (
        f", muted until {time.strftime('%H:%M', time.localtime(answer['muted_until']))}"
        if (args.cmd == "mute" and answer.get("muted_until"))
        else ""
    )
    print(f"{args.cmd}: accepted (state {answer.get('state')}{extra})")
    return EXIT_OK
