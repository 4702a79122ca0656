#!/usr/bin/env python
"""A pizza shop's raw order log (one row per order line), generated, for the event-log example.

    python examples/orders/generate.py                 # regenerate the committed data/orders.csv
    python examples/orders/generate.py --orders 50000 --out /tmp/orders

The log looks like a point-of-sale export, not like sslkit input: one row per order line with the
date and the time in two text columns (`order_date` as dd/mm/YYYY), an item identified by two
columns (`pizza_name` and `size`), its attributes repeated on every line (category, ingredients,
price — discounted 10% on promotion days, so the price of one item varies), cancelled and returned
lines, quantities, and a few party orders of dozens of distinct pizzas. Customers have a favourite
category and size, and some move house (their `city` changes between orders). The schemas beside
this file turn it into pairs without any script.

Deterministic: the same arguments give a byte-identical file. numpy only over whole arrays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent

MENU = {  # category → pizza → ingredients
    "classic": {
        "margherita": "tomato, mozzarella, basil",
        "marinara": "tomato, garlic, oregano",
        "napoletana": "tomato, mozzarella, anchovies, capers",
        "quattro formaggi": "mozzarella, gorgonzola, parmesan, fontina",
        "capricciosa": "tomato, mozzarella, ham, mushrooms, artichokes, olives",
        "diavola": "tomato, mozzarella, spicy salami, chili",
        "prosciutto": "tomato, mozzarella, prosciutto",
        "calzone": "mozzarella, ricotta, ham",
    },
    "veggie": {
        "garden": "tomato, mozzarella, peppers, onions, mushrooms",
        "spinach feta": "spinach, feta, garlic, mozzarella",
        "mediterranean": "tomato, olives, artichokes, sun-dried tomatoes, feta",
        "green goddess": "pesto, spinach, zucchini, mozzarella",
        "five cheese": "mozzarella, cheddar, gorgonzola, parmesan, ricotta",
        "mushroom truffle": "mushrooms, truffle oil, mozzarella, thyme",
        "roasted veg": "tomato, eggplant, zucchini, peppers",
        "vegan": "tomato, vegan cheese, peppers, onions",
    },
    "chicken": {
        "bbq chicken": "bbq sauce, chicken, red onions, mozzarella",
        "chicken alfredo": "alfredo sauce, chicken, spinach, mozzarella",
        "thai chicken": "peanut sauce, chicken, peppers, cilantro",
        "chicken pesto": "pesto, chicken, tomato, mozzarella",
        "buffalo chicken": "buffalo sauce, chicken, blue cheese, celery",
        "southwest chicken": "salsa, chicken, corn, jalapenos, cheddar",
        "chicken ranch": "ranch, chicken, bacon, mozzarella",
        "tandoori chicken": "tandoori chicken, onions, peppers, yogurt",
    },
    "supreme": {
        "supreme": "tomato, pepperoni, sausage, peppers, onions, mushrooms, olives",
        "meat lovers": "tomato, pepperoni, sausage, bacon, ham, mozzarella",
        "hawaiian": "tomato, ham, pineapple, mozzarella",
        "pepperoni": "tomato, pepperoni, mozzarella",
        "big meat": "tomato, beef, sausage, bacon, pepperoni",
        "mexicana": "salsa, beef, jalapenos, onions, cheddar",
        "calabrese": "tomato, nduja, spicy salami, onions",
        "sicilian": "tomato, anchovies, olives, capers, sausage",
    },
}
SIZES = ["S", "M", "L", "XL"]
SIZE_PRICE = np.array([0.0, 3.0, 6.0, 9.5])
CITIES = ["lyon", "paris", "lille", "nantes", "nice", "bordeaux", "toulouse", "rennes"]


def generate(orders: int = 2000, customers: int = 300, seed: int = 0) -> pl.DataFrame:
    """The order log: one row per order line, in order of order id."""
    rng = np.random.default_rng(seed)
    cats = list(MENU)
    names = [n for c in cats for n in MENU[c]]
    cat_of = np.repeat(np.arange(len(cats)), [len(MENU[c]) for c in cats])
    base = 8.0 + rng.integers(0, 9, len(names)) * 0.5
    per_cat = len(names) // len(cats)
    zipf = 1.0 / np.arange(1, per_cat + 1) ** 0.9  # popularity of pizzas within a category
    zipf /= zipf.sum()

    fav_cat = rng.integers(0, len(cats), customers)
    fav_size = rng.choice(len(SIZES), customers, p=[0.15, 0.35, 0.4, 0.1])
    home = rng.integers(0, len(CITIES), customers)
    moves = rng.random(customers) < 0.1  # these customers live in another city from mid-year on
    new_home = (home + 1 + rng.integers(0, len(CITIES) - 1, customers)) % len(CITIES)

    weight = 1.0 / np.arange(1, customers + 1) ** 0.8  # a few regulars order a lot
    customer = rng.permutation(customers)[rng.choice(customers, orders, p=weight / weight.sum())]
    day = np.sort(rng.integers(0, 365, orders))
    seconds = rng.integers(11 * 3600, 23 * 3600, orders)
    party = rng.random(orders) < 0.003
    lines = np.where(party, rng.integers(30, 70, orders), 1 + rng.poisson(1.3, orders))

    order = np.repeat(np.arange(orders), lines)
    who = customer[order]
    own = rng.random(len(order)) < 0.75  # from the customer's favourite category, else any
    cat = np.where(own, fav_cat[who], rng.integers(0, len(cats), len(order)))
    pizza = cat * per_cat + rng.choice(per_cat, len(order), p=zipf)
    party_line = party[order]
    pizza = np.where(party_line, rng.integers(0, len(names), len(order)), pizza)
    size = np.where(rng.random(len(order)) < 0.7, fav_size[who], rng.integers(0, len(SIZES), len(order)))
    size = np.where(party_line, rng.integers(0, len(SIZES), len(order)), size)

    promo = (day % 7 == 1)[order]  # Tuesdays: 10% off
    price = np.round((base[pizza] + SIZE_PRICE[size]) * np.where(promo, 0.9, 1.0), 2)
    status = rng.choice(["completed", "cancelled", "returned"], len(order), p=[0.92, 0.05, 0.03])
    city = np.where(moves[who] & (day[order] >= 182), new_home[who], home[who])
    date = np.datetime64("2025-01-01") + day[order].astype("timedelta64[D]")
    clock = seconds[order]
    return pl.DataFrame({
        "order_id": 10001 + order,
        "order_date": pl.Series(date).dt.strftime("%d/%m/%Y"),
        "order_time": pl.select(pl.format("{}:{}:{}", *(pl.lit(x).cast(pl.String).str.zfill(2) for x in (
            clock // 3600, clock // 60 % 60, clock % 60)))).to_series(),
        "customer_id": np.char.add("c", np.char.zfill(customer[order].astype(str), 4)),
        "city": np.array(CITIES)[city],
        "pizza_name": np.array(names)[pizza],
        "size": np.array(SIZES)[size],
        "category": np.array(cats)[cat_of[pizza]],
        "ingredients": np.array([MENU[cats[cat_of[i]]][names[i]] for i in range(len(names))])[pizza],
        "unit_price": price,
        "quantity": np.where(party_line, 1 + rng.integers(0, 3, len(order)), 1 + rng.poisson(0.3, len(order))),
        "status": status,
    })


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "data")
    args = ap.parse_args(argv)
    log = generate(args.orders, args.customers, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "orders.csv.tmp"
    log.write_csv(tmp)
    tmp.replace(args.out / "orders.csv")
    print(f"wrote {args.out / 'orders.csv'}: {log.height:,} order lines, {log['order_id'].n_unique():,} orders, "
          f"{log['customer_id'].n_unique():,} customers", flush=True)


if __name__ == "__main__":
    main()
