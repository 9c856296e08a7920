"""Checks rendered chat bodies with the platforms' own SDK models.

Reads JSON lines {"name": ..., "kind": "slack" | "google_chat", "body": {...}} on stdin and
prints one line per body that a model refuses: `name: what is wrong`. Exit 1 when any is.

- Slack: slack_sdk's Block Kit models (`Block.parse`, `BlockAttachment`), each block and
  attachment validated (`validate_json`: lengths, counts, the attachment colour) and read back
  (a field the model does not know is dropped by it: named here).
- Google Chat: google-apps-chat's `Message` (the REST resource's protobuf), parsed from the JSON
  with unknown fields refused (cardsV2, its sections and widgets, their field names and types).

Used by tests/it/sdk.rs; the packages come from PyPI into target/sdk-venv (.ci/run).
"""

import json
import sys

from slack_sdk.models.attachments import BlockAttachment
from slack_sdk.models.blocks import Block
from google.apps.chat_v1.types import Message

SLACK_TOP = {"text", "blocks", "attachments", "thread_ts", "channel", "ts", "mrkdwn",
             "unfurl_links", "unfurl_media", "reply_broadcast", "username", "icon_url",
             "icon_emoji"}
ATTACHMENT = {"blocks", "color", "fallback"}


def missing(given, parsed, at):
    """The keys of `given` that `parsed` (the model read back) lacks, recursively."""
    out = []
    if isinstance(given, dict):
        if not isinstance(parsed, dict):
            return [at]
        for k, v in given.items():
            if k not in parsed:
                out.append(f"{at}.{k}")
            else:
                out += missing(v, parsed[k], f"{at}.{k}")
    elif isinstance(given, list) and isinstance(parsed, list):
        for i, (g, p) in enumerate(zip(given, parsed)):
            out += missing(g, p, f"{at}[{i}]")
    return out


def blocks(items, at):
    problems, parsed = [], []
    for i, b in enumerate(items):
        block = Block.parse(b)
        if block is None:
            problems.append(f"{at}[{i}]: not a block Slack knows ({b.get('type')!r})")
            continue
        try:
            block.validate_json()
            read_back = block.to_dict()
        except Exception as e:  # the SDK raises SlackObjectFormationError
            problems.append(f"{at}[{i}] ({b.get('type')}): {e}")
            continue
        problems += [f"{p}: unknown to the model" for p in missing(b, read_back, f"{at}[{i}]")]
        parsed.append(block)
    return problems, parsed


def slack(body):
    problems = [f"{k}: not a field of a message" for k in body if k not in SLACK_TOP]
    if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
        problems.append("no text, blocks or attachments")
    p, _ = blocks(body.get("blocks", []), "blocks")
    problems += p
    for i, a in enumerate(body.get("attachments", [])):
        problems += [f"attachments[{i}].{k}: not a field of a block attachment" for k in a if k not in ATTACHMENT]
        p, parsed = blocks(a.get("blocks", []), f"attachments[{i}].blocks")
        problems += p
        try:
            BlockAttachment(blocks=parsed, color=a.get("color"), fallback=a.get("fallback")).validate_json()
        except Exception as e:
            problems.append(f"attachments[{i}]: {e}")
    return problems


def google_chat(body):
    try:
        Message.from_json(json.dumps(body), ignore_unknown_fields=False)
    except Exception as e:
        return [str(e).splitlines()[0]]
    return []


def main():
    bad = 0
    checked = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        check = {"slack": slack, "google_chat": google_chat}[item["kind"]]
        for problem in check(item["body"]):
            bad += 1
            print(f"{item['name']} ({item['kind']}): {problem}")
        checked += 1
    print(f"checked {checked} bodies", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
