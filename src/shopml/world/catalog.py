"""The catalog: categories, brands, style groups (near-duplicates) and products.

A *style* fixes category, brand, silhouette variant, pattern, accent colour and list price; the
products of one style differ only in colour or seller, so they are near-duplicates that
recommendations can de-duplicate. Hidden per-product quantities (base demand, elasticity, noise
dispersion, similarity vectors) go to ``truth/products.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# name, singular, share of the catalog, median list price, seasonal amplitude, seasonal peak
# (day of year), festival lift
CATEGORIES: tuple[tuple[str, str, float, float, float, int, float], ...] = (
    ("tops", "top", 0.16, 25.0, 0.20, 150, 2.0),
    ("dresses", "dress", 0.12, 45.0, 0.35, 160, 2.2),
    ("jeans", "jeans", 0.09, 40.0, 0.15, 300, 1.8),
    ("shoes", "shoe", 0.12, 60.0, 0.10, 100, 2.2),
    ("bags", "bag", 0.09, 50.0, 0.10, 330, 2.0),
    ("watches", "watch", 0.08, 120.0, 0.15, 350, 3.0),
    ("sunglasses", "sunglasses", 0.06, 30.0, 0.50, 170, 1.6),
    ("mugs", "mug", 0.09, 12.0, 0.30, 355, 1.5),
    ("lamps", "lamp", 0.08, 35.0, 0.30, 10, 1.7),
    ("phones", "phone", 0.11, 300.0, 0.10, 280, 4.0),
)
CATEGORY_NAMES = tuple(c[0] for c in CATEGORIES)

# name -> RGB
COLORS: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 32),
    "white": (236, 236, 230),
    "grey": (128, 128, 130),
    "navy": (28, 40, 96),
    "blue": (40, 90, 200),
    "sky": (120, 180, 235),
    "red": (200, 30, 40),
    "maroon": (110, 20, 40),
    "pink": (240, 130, 180),
    "orange": (240, 130, 30),
    "yellow": (240, 210, 40),
    "green": (40, 150, 60),
    "olive": (110, 120, 40),
    "teal": (20, 130, 130),
    "purple": (110, 50, 150),
    "brown": (120, 72, 36),
}
COLOR_NAMES = tuple(COLORS)
PATTERNS = ("solid", "stripes", "dots", "checks", "zigzag", "gradient")
PATTERN_ADJ = {
    "solid": "plain",
    "stripes": "striped",
    "dots": "dotted",
    "checks": "checked",
    "zigzag": "zigzag",
    "gradient": "ombre",
}
BRAND_SHAPES = ("circle", "square", "triangle", "diamond", "bar", "ring", "cross", "star")
TIER_PRICE = np.array([0.7, 1.0, 1.7])  # budget, mid, premium
TIER_POP = np.array([1.2, 1.0, 0.6])

_SYL = ("ka", "lo", "mi", "ra", "ve", "zo", "tan", "bel", "dor", "qui", "sen", "lux", "ar", "no")
_SYL += ("vi", "ta", "mo", "ri", "xa", "pe", "ul", "so", "ne", "fi")

EMBED_DIM = 32


@dataclass(frozen=True)
class Catalog:
    """The generated catalog: the public table and hidden per-product truth.

    Attributes:
        products: public catalog frame (docs/data.md, catalog.parquet).
        truth: hidden per-product frame (base rate, elasticity, dispersion, popularity, ...).
        vectors: (n_products, EMBED_DIM) float32 unit vectors; cosine = hidden similarity.
        brands: frame of brands (brand, tier, mark shape, mark colour).
    """

    products: pd.DataFrame
    truth: pd.DataFrame
    vectors: np.ndarray
    brands: pd.DataFrame


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        k = 2 if rng.random() < 0.7 else 3
        name = "".join(_SYL[i] for i in rng.integers(0, len(_SYL), size=k)).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_catalog(
    rng: np.random.Generator, n_products: int, start: pd.Timestamp, end: pd.Timestamp
) -> Catalog:
    """Draw ``n_products`` products in style groups of 1-4.

    Args:
        rng: the generator (consumed).
        n_products: number of products (>= 10).
        start, end: first and last day of the sales window; launch and delist dates fall around it.
    """
    if n_products < 10:
        raise ValueError(f"n_products: expected >= 10, found {n_products}")
    n_cat = len(CATEGORIES)
    cat_share = np.array([c[2] for c in CATEGORIES])
    cat_share = cat_share / cat_share.sum()
    cat_price = np.array([c[3] for c in CATEGORIES])

    # Brands: each sells 1-3 categories, has a tier and a mark (shape + colour).
    n_brands = int(np.clip(n_products // 12, 12, 3000))
    brand_names = _brand_names(rng, n_brands)
    brand_tier = rng.choice(3, size=n_brands, p=[0.4, 0.4, 0.2])
    brand_pop = rng.lognormal(0.0, 0.6, size=n_brands) * TIER_POP[brand_tier]
    brand_cats = [
        rng.choice(n_cat, size=rng.integers(1, 4), replace=False, p=cat_share)
        for _ in range(n_brands)
    ]
    brands = pd.DataFrame(
        {
            "brand": brand_names,
            "tier": brand_tier.astype(np.int8),
            "mark_shape": [BRAND_SHAPES[i % len(BRAND_SHAPES)] for i in range(n_brands)],
            "mark_color": rng.choice(COLOR_NAMES, size=n_brands),
        }
    )
    cat_brands: list[np.ndarray] = []
    for c in range(n_cat):
        members = np.array([b for b in range(n_brands) if c in brand_cats[b]], dtype=np.int64)
        if members.size == 0:
            members = np.array([c % n_brands], dtype=np.int64)
        cat_brands.append(members)

    # Styles, then products (1-4 per style) until n_products are drawn.
    sizes: list[int] = []
    total = 0
    while total < n_products:
        s = min(int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15])), n_products - total)
        sizes.append(s)
        total += s
    n_styles = len(sizes)
    style_cat = rng.choice(n_cat, size=n_styles, p=cat_share)
    style_brand = np.empty(n_styles, dtype=np.int64)
    for c in range(n_cat):
        idx = np.flatnonzero(style_cat == c)
        members = cat_brands[c]
        w = brand_pop[members] / brand_pop[members].sum()
        style_brand[idx] = rng.choice(members, size=idx.size, p=w)
    style_pattern = rng.choice(len(PATTERNS), size=n_styles, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    style_variant = rng.integers(0, 3, size=n_styles)
    style_scale = rng.integers(0, 3, size=n_styles)  # pattern scale
    style_accent = rng.integers(0, len(COLOR_NAMES), size=n_styles)
    style_price = (
        cat_price[style_cat]
        * TIER_PRICE[brand_tier[style_brand]]
        * rng.lognormal(0.0, 0.3, size=n_styles)
    )
    style_pop = rng.lognormal(0.0, 1.0, size=n_styles)

    sizes_a = np.array(sizes)
    p_style = np.repeat(np.arange(n_styles), sizes_a)
    first = np.r_[0, np.cumsum(sizes_a)[:-1]]
    rank_in_style = np.arange(n_products) - np.repeat(first, sizes_a)
    # Colour: a style draws distinct colours; with probability 0.25 a variant is the same colour
    # from another seller (an exact visual duplicate at a slightly different price).
    colour = np.empty(n_products, dtype=np.int64)
    seller = rng.integers(1, max(4, n_products // 25), size=n_products)
    for s in range(n_styles):
        idx = np.arange(first[s], first[s] + sizes[s])
        cols = rng.choice(len(COLOR_NAMES), size=sizes[s], replace=False)
        dup = rng.random(sizes[s]) < 0.25
        dup[0] = False
        cols[dup] = cols[0]
        colour[idx] = cols
    # Avoid a product whose colour equals its pattern accent (an invisible pattern).
    clash = colour == style_accent[p_style]
    style_accent_p = np.where(
        clash, (style_accent[p_style] + 5) % len(COLOR_NAMES), style_accent[p_style]
    )

    cat = style_cat[p_style]
    brand = style_brand[p_style]
    price = np.round(style_price[p_style] * rng.uniform(0.95, 1.05, size=n_products), 2)
    price = np.maximum(price, 1.0)

    # Lifecycle: 75% launched before the window; the rest inside it (some only weeks before the end).
    n_days = int((end - start).days) + 1
    before = rng.random(n_products) < 0.75
    launch_off = np.where(
        before,
        -rng.integers(1, 700, size=n_products),
        rng.integers(0, max(n_days - 7, 1), size=n_products),
    )
    launch = start + pd.to_timedelta(launch_off, unit="D")
    first_day = np.maximum(launch_off, 0)
    delisted = rng.random(n_products) < 0.12
    delist_off = first_day + 30 + (rng.random(n_products) * (n_days - first_day - 30)).astype(int)
    delisted &= delist_off < n_days
    delist = pd.Series(start + pd.to_timedelta(np.where(delisted, delist_off, 0), unit="D"))
    delist[~delisted] = pd.NaT

    product_id = np.arange(1, n_products + 1, dtype=np.int64)
    names = np.array(CATEGORY_NAMES)
    singular = np.array([c[1] for c in CATEGORIES])
    colour_names = np.array(COLOR_NAMES)
    brand_arr = np.array(brand_names)
    pattern_names = np.array(PATTERNS)
    adj = np.array([PATTERN_ADJ[p] for p in PATTERNS])
    title = [
        f"{b} {c} {a} {s}"
        for b, c, a, s in zip(
            brand_arr[brand],
            colour_names[colour],
            adj[style_pattern[p_style]],
            singular[cat],
            strict=True,
        )
    ]
    products = pd.DataFrame(
        {
            "product_id": product_id,
            "title": title,
            "category": names[cat],
            "brand": brand_arr[brand],
            "price": price.astype(np.float64),
            "style_id": (p_style + 1).astype(np.int64),
            "color": colour_names[colour],
            "pattern": pattern_names[style_pattern[p_style]],
            "image": [f"images/catalog/{i}.png" for i in product_id],
            "launch_date": pd.to_datetime(launch).astype("datetime64[ns]"),
            "delist_date": pd.to_datetime(delist).astype("datetime64[ns]").to_numpy(),
            "seller_id": seller.astype(np.int64),
            "variant": style_variant[p_style].astype(np.int8),
            "accent_color": colour_names[style_accent_p],
            "pattern_scale": style_scale[p_style].astype(np.int8),
        }
    )

    # Hidden truth. Base demand: lognormal (M5-like heavy tail) times style and brand popularity.
    pop = style_pop[p_style] * brand_pop[brand] * (0.85 + 0.3 * (rank_in_style == 0))
    pop = pop / np.exp(np.mean(np.log(pop)))
    base = 0.42 * np.exp(rng.normal(0.0, 0.95, size=n_products)) * pop**0.6
    elasticity = np.clip(rng.normal(-2.5, 0.5, size=n_products), -4.5, -1.0)
    dispersion = np.exp(rng.normal(np.log(1.5), 0.5, size=n_products))
    trend = rng.normal(0.0, 0.2, size=n_products)
    discount_rate = rng.uniform(0.004, 0.03, size=n_products)
    truth = pd.DataFrame(
        {
            "product_id": product_id,
            "base_rate": base,
            "popularity": pop,
            "elasticity": elasticity,
            "dispersion": dispersion,
            "trend": trend,
            "discount_rate": discount_rate,
            "brand_tier": brand_tier[brand].astype(np.int8),
            "mark_shape": brands["mark_shape"].to_numpy()[brand],
            "mark_color": brands["mark_color"].to_numpy()[brand],
        }
    )

    # Similarity vectors: category + style + brand + colour directions.
    cat_vec = _unit(rng.normal(size=(n_cat, EMBED_DIM)))
    style_vec = _unit(rng.normal(size=(n_styles, EMBED_DIM)))
    brand_vec = _unit(rng.normal(size=(n_brands, EMBED_DIM)))
    col_vec = _unit(rng.normal(size=(len(COLOR_NAMES), EMBED_DIM)))
    vectors = _unit(
        1.0 * cat_vec[cat]
        + 0.9 * style_vec[p_style]
        + 0.35 * brand_vec[brand]
        + 0.3 * col_vec[colour]
    ).astype(np.float32)
    return Catalog(products=products, truth=truth, vectors=vectors, brands=brands)
