#!/usr/bin/env python3
"""Deterministic benchmark data: an audience CSV, a suppression list and campaigns.

usage: gen.py OUT_DIR ROWS [--unique]
"""
import os
import random
import sys

FIRST = ["An", "Bình", "Cường", "Dũng", "Em", "Giang", "Hà", "Khoa", "Lan", "Minh", "Ngọc", "Phúc", "Quân", "Thảo", "Vy"]
CITY = ["Hà Nội", "Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ"]


def main() -> None:
    out, rows = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20261124)
    path = os.path.join(out, f"audience-{rows}.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("customer_id,first_name,phone,email,city,points,tier\n")
        buf = []
        for i in range(rows):
            name = FIRST[rng.randrange(len(FIRST))]
            city = CITY[rng.randrange(len(CITY))]
            points = rng.randrange(0, 5000)
            tier = "vip" if points > 3000 else "member"
            buf.append(f"C{i:08d},{name},09{i % 100000000:08d},c{i}@example.vn,{city},{points},{tier}\n")
            if len(buf) >= 10000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    sup = os.path.join(out, "suppression.csv")
    with open(sup, "w", encoding="utf-8") as f:
        f.write("customer_id\n")
        for i in range(0, 10000 * 37, 37):
            f.write(f"C{i:08d}\n")
    print(path)


if __name__ == "__main__":
    main()
