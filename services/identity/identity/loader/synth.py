"""Synthetic, valid card holders across the seed's ten cities (demo data, tests, benches).

Every ID number passes ``stdnum.cn.ric``: its region is a county of the city that
existed in the birth year, the birth date is real and the check character right.
Names are plausible Chinese names, phones mainland mobiles, card numbers 9
upper-case letters or digits. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from stdnum import numdb
from stdnum.cn import ric

CITIES: dict[str, str] = {
    "370200": "Qingdao",
    "331100": "Lishui",
    "350100": "Fuzhou",
    "360500": "Xinyu",
    "440100": "Guangzhou",
    "450100": "Nanning",
    "460100": "Haikou",
    "510100": "Chengdu",
    "310000": "Shanghai",
    "110000": "Beijing",
}

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬芳燕彩春菊兰凤"
    "洁梅琳素云莲真环雪荣爱妹霞香月莺媛艳瑞凡佳嘉琼勤珍贞莉桂娣叶璧璐娅琦晶妍茜秋珊莎"
    "锦黛青倩婷姣婉娴瑾颖露瑶怡婵雁蓓纨仪荷丹蓉眉君琴蕊薇菁梦岚苑婕馨瑗琰韵融园艺咏卿"
    "聪澜纯毓悦昭冰爽琬茗羽希宁欣飘育滢馥筠柔竹霭凝晓欢霄枫芸菲寒伊亚宜可姬舒影荔枝思"
    "丽"
)
_PREFIXES = ("13", "15", "17", "18", "19", "14", "16")


@lru_cache(maxsize=16)
def counties(city: str) -> tuple[tuple[str, int, int], ...]:
    """(county code, first year, last year) of the city's counties known to python-stdnum."""
    db = numdb.get("cn/loc")
    head = city[:4] if city[2:4] != "00" else city[:2]
    out: list[tuple[str, int, int]] = []
    for n in range(10_000 if len(head) == 2 else 100):
        code = f"{head}{n:0{6 - len(head)}d}"
        info = {k: v for _, props in db.info(code) for k, v in props.items()}
        for county in info.get("county", "").split(","):
            if not county.startswith("["):
                continue
            start, end = county[1:].split("]")[0].split("-")
            first, last = max(int(start or 1940), 1940), min(int(end or 2008), 2008)
            if first <= last:
                out.append((code, first, last))
    return tuple(out)


def make_id_number(rng: random.Random, city: str, *, gender: str | None = None) -> str:
    """A valid ID number registered in ``city`` (a county that existed in the birth year)."""
    code, first, last = rng.choice(counties(city))
    year = rng.randint(first, last)
    born = date(year, 1, 1) + timedelta(days=rng.randrange(365))
    seq = rng.randrange(1, 1000)
    if gender is not None and (seq % 2 == 1) != (gender == "male"):
        seq = seq + 1 if seq < 999 else seq - 1
    body = f"{code}{born:%Y%m%d}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")


def make_name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def make_phone(rng: random.Random) -> str:
    return rng.choice(_PREFIXES)[:1] + str(rng.randint(3, 9)) + f"{rng.randrange(10**9):09d}"


def make_card_number(rng: random.Random) -> str:
    return rng.choice(string.ascii_uppercase) + "".join(
        rng.choice(string.digits + string.ascii_uppercase) for _ in range(8)
    )


def holders(
    count: int, *, seed: int = 2018, cities: tuple[str, ...] = tuple(CITIES)
) -> Iterator[dict[str, Any]]:
    """``count`` synthetic import rows (the ``POST /v1/admin/holders`` row shape)."""
    rng = random.Random(seed)
    ids: set[str] = set()
    cards: set[str] = set()
    while len(ids) < count:
        city = cities[len(ids) % len(cities)]
        id_number = make_id_number(rng, city)
        card = make_card_number(rng)
        if id_number in ids or card in cards:
            continue
        ids.add(id_number)
        cards.add(card)
        age = 2026 - int(id_number[6:10])
        yield {
            "name": make_name(rng),
            "id_number": id_number,
            "phone": make_phone(rng),
            "card_number": card,
            "region_code": city,
            "insurance_type": "retired"
            if age >= 60
            else rng.choice(("employee", "employee", "resident")),
            "card_status": "active",
            "account_balance": f"{rng.randrange(0, 500_000) / 100:.2f}",
        }
