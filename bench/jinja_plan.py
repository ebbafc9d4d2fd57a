#!/usr/bin/env python3
"""The plan pipeline in 20 lines of Python + Jinja2: the reference for `plan`.
usage: jinja_plan.py AUDIENCE.csv SUPPRESSION.csv"""
import csv, json, sys
from jinja2 import Environment, StrictUndefined
env = Environment(undefined=StrictUndefined)
text = env.from_string("Chào {{ first_name }}{% if tier == 'vip' %} (VIP){% endif %}, bạn có {{ points }} điểm tại {{ city }}, hạn dùng {{ vars.expiry }}.")
suppressed = {row["customer_id"] for row in csv.DictReader(open(sys.argv[2], encoding="utf-8"))}
seen, counts, out = set(), {"read": 0, "filtered": 0, "suppressed": 0, "duplicates": 0, "to_send": 0}, open("/dev/null", "w")
for row in csv.DictReader(open(sys.argv[1], encoding="utf-8-sig")):
    counts["read"] += 1
    if int(row["points"]) < 500: counts["filtered"] += 1; continue
    key = row["customer_id"]
    if key in suppressed: counts["suppressed"] += 1; continue
    if key in seen: counts["duplicates"] += 1; continue
    seen.add(key)
    body = {k: v for k, v in (("customer_id", key), ("customer_email", row["email"]), ("customer_phone", row["phone"])) if v}
    body["messages"] = [{"text": text.render(vars={"expiry": "31/12/2026"}, **row)}]
    body["messaging_tag"] = "ACCOUNT_UPDATE"
    out.write(json.dumps(body, ensure_ascii=False)); counts["to_send"] += 1
print(json.dumps(counts))
