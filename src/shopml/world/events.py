"""Users, behaviour histories (events) and ranking impressions.

Users have latent tastes: a Dirichlet weight per category, a favourite brand, and an activity level
whose distribution is heavy-tailed (at medium and large scale some users have thousands of events).

A history is a sequence of sessions. Each session starts from a *seed* product drawn from the user's
tastes (category by taste weight, product by popularity; sometimes from the favourite brand); its
events are the seed again, products of the seed's style, of its category and brand, or of its
category. So the recent history holds a few distinct interest threads. Every product shown or
seen is on sale at that time (redrawn otherwise).

An impression request shows a slate of candidates at a moment between two events. The click
probability depends mostly on the candidate's similarity to *specific recent* history items,
``max_a cos(candidate, h_a) * RECENCY ** a`` over the last ``RECENT_WINDOW`` items (a = 0 most
recent), which attention over the history can recover and mean pooling blurs; then on popularity,
the user's taste for the category, and position. The split is by time: requests on or after the
cutoff are "test".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopml.world.catalog import CATEGORY_NAMES

ACTIONS = ("view", "click", "cart", "purchase")
RECENT_WINDOW = 10
RECENCY = 0.9
SLATE = 10
# logit = BIAS + W_SIM * recent_similarity + W_POP * z(log popularity) + W_TASTE * taste - W_POS * (pos - 1)
BIAS, W_SIM, W_POP, W_TASTE, W_POS = -6.0, 6.0, 0.35, 1.5, 0.12


@dataclass(frozen=True)
class UserParams:
    median_events: float
    sigma: float  # lognormal body
    pareto_share: float  # share of users from a Pareto tail
    pareto_alpha: float
    max_events: int
    max_requests: int


@dataclass(frozen=True)
class Users:
    """Users: the public frame and the hidden tastes."""

    users: pd.DataFrame  # users.parquet
    taste: np.ndarray  # (n_users, n_categories) float64, rows sum to 1
    fav_brand: np.ndarray  # (n_users,) index into brand codes
    n_events: np.ndarray  # (n_users,) int64
    start_s: np.ndarray  # (n_users,) first activity, seconds from window start
    span_s: np.ndarray  # (n_users,) activity span in seconds


class ProductIndex:
    """Product-level arrays and grouped samplers used to draw events and candidates."""

    def __init__(
        self,
        products: pd.DataFrame,
        truth: pd.DataFrame,
        vectors: np.ndarray,
        start: pd.Timestamp | None = None,
    ) -> None:
        """Args: the catalog frames, the similarity vectors, and the window start (seconds origin)."""
        origin = start if start is not None else products["launch_date"].min()
        self.launch_s = (products["launch_date"] - origin).dt.total_seconds().to_numpy()
        self.delist_s = (
            (products["delist_date"] - origin).dt.total_seconds().fillna(np.inf).to_numpy()
        )
        self.ids = products["product_id"].to_numpy().astype(np.int64)
        self.n = len(self.ids)
        self.cat = pd.Categorical(
            products["category"], categories=list(CATEGORY_NAMES)
        ).codes.astype(np.int64)
        self.brand_codes, self.brand = np.unique(products["brand"].to_numpy(), return_inverse=True)
        self.style = products["style_id"].to_numpy().astype(np.int64)
        self.vectors = vectors
        pop = truth["popularity"].to_numpy()
        self.popularity = pop
        self.logpop_z = (np.log(pop) - np.log(pop).mean()) / (np.log(pop).std() + 1e-9)
        w = pop**0.8
        self.global_cum = np.cumsum(w) / w.sum()
        # Grouped popularity samplers: key + normalised cumulative weight within the key.
        self._cat_sampler = self._weighted(self.cat, w, len(CATEGORY_NAMES))
        self._brand_sampler = self._weighted(self.brand, w, len(self.brand_codes))
        # Uniform group members: style, and (category, brand).
        self._style = self._groups(self.style)
        self._catbrand = self._groups(self.cat * len(self.brand_codes) + self.brand)

    @staticmethod
    def _weighted(key: np.ndarray, w: np.ndarray, n_keys: int):
        order = np.lexsort((np.arange(key.size), key))
        k_sorted = key[order]
        w_sorted = w[order]
        cum = np.cumsum(w_sorted)
        starts = np.searchsorted(k_sorted, np.arange(n_keys), side="left")
        ends = np.searchsorted(k_sorted, np.arange(n_keys), side="right")
        before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
        total = np.where(ends > starts, cum[np.maximum(ends - 1, 0)] - before, 1.0)
        within = (cum - before[k_sorted]) / total[k_sorted]
        return order, k_sorted.astype(np.float64) + np.minimum(within, 1 - 1e-12), ends > starts

    @staticmethod
    def _groups(key: np.ndarray):
        order = np.argsort(key, kind="stable")
        uniq, start, size = np.unique(key[order], return_index=True, return_counts=True)
        return order, uniq, start, size

    def available(self, items: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """Whether each product is on sale at time ``t_s`` (seconds from the window start)."""
        return (self.launch_s[items] <= t_s) & (t_s < self.delist_s[items])

    def make_available(
        self, rng, items: np.ndarray, t_s: np.ndarray, resample, rounds: int = 8
    ) -> np.ndarray:
        """Redraw (with ``resample(positions)``) the items not on sale at their time ``t_s``.

        After ``rounds`` redraws, a rare leftover becomes the most popular product on sale then.
        """
        items = items.copy()
        bad = ~self.available(items, t_s)
        for _ in range(rounds):
            if not bad.any():
                break
            idx = np.flatnonzero(bad)
            items[idx] = resample(idx)
            bad[idx] = ~self.available(items[idx], t_s[idx])
        for i in np.flatnonzero(bad):
            ok = np.flatnonzero(self.available(np.arange(self.n), np.full(self.n, t_s[i])))
            if ok.size:
                items[i] = ok[np.argmax(self.popularity[ok])]
        return items

    def by_popularity(self, rng, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.global_cum, rng.random(size)), self.n - 1)

    def in_category(self, rng, cats: np.ndarray) -> np.ndarray:
        """Product index per entry of ``cats`` (category codes), drawn by popularity."""
        order, keys, present = self._cat_sampler
        cats = np.where(present[cats], cats, np.argmax(present))
        pos = np.searchsorted(keys, cats + rng.random(cats.size), side="left")
        return order[np.minimum(pos, self.n - 1)]

    def in_brand(self, rng, brands: np.ndarray) -> np.ndarray:
        order, keys, _ = self._brand_sampler
        pos = np.searchsorted(keys, brands + rng.random(brands.size), side="left")
        return order[np.minimum(pos, self.n - 1)]

    def _member(self, rng, groups, key: np.ndarray) -> np.ndarray:
        order, uniq, start, size = groups
        g = np.searchsorted(uniq, key)
        return order[start[g] + (rng.random(key.size) * size[g]).astype(np.int64)]

    def same_style(self, rng, items: np.ndarray) -> np.ndarray:
        return self._member(rng, self._style, self.style[items])

    def same_cat_brand(self, rng, items: np.ndarray) -> np.ndarray:
        return self._member(
            rng, self._catbrand, self.cat[items] * len(self.brand_codes) + self.brand[items]
        )

    def related(
        self, rng, items: np.ndarray, p_style: float = 0.5, p_brand: float = 0.25
    ) -> np.ndarray:
        """A product related to each item: its style, its (category, brand), or its category."""
        r = rng.random(items.size)
        out = self.in_category(rng, self.cat[items])
        sb = r < p_style + p_brand
        out[sb] = self.same_cat_brand(rng, items[sb])
        st = r < p_style
        out[st] = self.same_style(rng, items[st])
        return out


def make_users(
    rng: np.random.Generator, n_users: int, params: UserParams, index: ProductIndex, window_s: int
) -> Users:
    """Draw users: tastes, favourite brand, activity (heavy-tailed) and activity span."""
    n_cat = len(CATEGORY_NAMES)
    taste = rng.dirichlet(np.full(n_cat, 0.35), size=n_users)
    brand_pop = np.bincount(index.brand, minlength=len(index.brand_codes)).astype(np.float64)
    fav = rng.choice(len(index.brand_codes), size=n_users, p=brand_pop / brand_pop.sum())
    body = np.exp(rng.normal(np.log(params.median_events), params.sigma, size=n_users))
    tail = params.median_events * (1.0 - rng.random(n_users)) ** (-1.0 / params.pareto_alpha)
    n_ev = np.where(rng.random(n_users) < params.pareto_share, tail, body)
    n_ev = np.clip(np.round(n_ev), 3, params.max_events).astype(np.int64)
    start = (rng.random(n_users) * 0.85 * window_s).astype(np.int64)
    # Sessions start at least a day before the window's end (no event falls after it).
    span = np.minimum(
        window_s - start - 86_400, (rng.uniform(0.15, 1.0, size=n_users) * window_s)
    ).astype(np.int64)
    segment = np.select(
        [n_ev < 10, n_ev < 50, n_ev < 500], ["new", "casual", "regular"], default="power"
    )
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "signup_ts": np.zeros(n_users, dtype="datetime64[ns]"),  # filled by generate
            "region": rng.choice(
                np.array(["north", "south", "east", "west", "central"]), size=n_users
            ),
            "segment": segment,
            "home_category": np.array(CATEGORY_NAMES)[taste.argmax(axis=1)],
        }
    )
    return Users(users=users, taste=taste, fav_brand=fav, n_events=n_ev, start_s=start, span_s=span)


def _sample_rows(rng, cum_rows: np.ndarray) -> np.ndarray:
    """One category per row of a (n, C) cumulative-weights matrix."""
    u = rng.random(cum_rows.shape[0])[:, None]
    return np.minimum((cum_rows < u).sum(axis=1), cum_rows.shape[1] - 1)


def _draw_events(rng, users: Users, uidx: np.ndarray, index: ProductIndex, t0: np.datetime64):
    """Events of users ``uidx`` (indices into users): arrays sorted by (user, ts)."""
    lens = users.n_events[uidx]
    e_n = int(lens.sum())
    ev_user = np.repeat(np.arange(uidx.size), lens)
    first = np.zeros(e_n, bool)
    first[np.r_[0, np.cumsum(lens)[:-1]]] = True
    new_session = first | (rng.random(e_n) < 0.2)
    sess = np.cumsum(new_session) - 1
    s_n = int(sess[-1]) + 1
    sess_user = ev_user[new_session]
    # Times: session starts uniform over the user's span; events within 20 s to 10 min apart.
    start = users.start_s[uidx[sess_user]] + (
        rng.random(s_n) * users.span_s[uidx[sess_user]]
    ).astype(np.int64)
    gaps = rng.integers(20, 600, size=e_n)
    gaps[new_session] = 0
    within = np.cumsum(gaps) - np.repeat(
        np.cumsum(gaps)[new_session], np.bincount(sess, minlength=s_n)
    )
    ts = start[sess] + within
    # Seed per session: category by taste, product by popularity; 25% from the favourite brand.
    cum = np.cumsum(users.taste[uidx[sess_user]], axis=1)
    seed_cat = _sample_rows(rng, cum)
    seed = index.in_category(rng, seed_cat)
    fav = rng.random(s_n) < 0.25
    seed[fav] = index.in_brand(rng, users.fav_brand[uidx[sess_user[fav]]])
    seed_cat[fav] = index.cat[seed[fav]]
    # Only products on sale when the session starts.
    seed = index.make_available(rng, seed, start, lambda i: index.in_category(rng, seed_cat[i]))
    seed_e = seed[sess]
    # Within a session: the seed again, or something related to it (on sale at the event's time).
    r = rng.random(e_n)
    item = index.related(rng, seed_e, p_style=0.45, p_brand=0.25)
    again = (r < 0.22) | new_session
    item[again] = seed_e[again]
    item = index.make_available(
        rng, item, ts, lambda i: index.related(rng, seed_e[i], p_style=0.45, p_brand=0.25)
    )
    # Actions: re-visits of the seed convert more.
    p_plain = np.array([0.62, 0.27, 0.08, 0.03])
    p_again = np.array([0.30, 0.30, 0.25, 0.15])
    u = rng.random(e_n)
    act = np.where(
        again & ~new_session,
        np.searchsorted(np.cumsum(p_again), u, side="right"),
        np.searchsorted(np.cumsum(p_plain), u, side="right"),
    )
    act = np.minimum(act, 3)
    order = np.lexsort((np.arange(e_n), ts, ev_user))
    return ev_user[order], item[order], ts[order], act[order]


def event_chunks(
    rng_for_chunk,
    users: Users,
    index: ProductIndex,
    start: pd.Timestamp,
    cutoff: pd.Timestamp,
    chunk_users: int,
    params: UserParams,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]]:
    """Yield (events, impressions, impression truth, first event ts per user) per chunk of users.

    Events are sorted by (user_id, ts); impressions by (user_id, ts, position).
    """
    t0 = np.datetime64(start.to_datetime64(), "ns")
    cutoff_s = int((cutoff - start).total_seconds())
    n_users = len(users.users)
    user_ids = users.users["user_id"].to_numpy()
    for ci, lo in enumerate(range(0, n_users, chunk_users)):
        rng = rng_for_chunk(ci)
        uidx = np.arange(lo, min(lo + chunk_users, n_users))
        ev_u, item, ts, act = _draw_events(rng, users, uidx, index, t0)
        lens = np.bincount(ev_u, minlength=uidx.size)
        offs = np.r_[0, np.cumsum(lens)]
        events = pd.DataFrame(
            {
                "user_id": user_ids[uidx[ev_u]],
                "product_id": index.ids[item],
                "ts": t0 + ts.astype("timedelta64[s]").astype("timedelta64[ns]"),
                "action": np.array(ACTIONS)[act],
            }
        )
        first_ts = ts[offs[:-1]]
        imps, imp_truth = _draw_impressions(
            rng, users, uidx, index, ev_u, item, ts, offs, params, t0, cutoff_s
        )
        yield events, imps, imp_truth, first_ts


def _row_duplicates(a: np.ndarray) -> np.ndarray:
    """Mask of entries equal to an earlier entry of the same row."""
    order = np.argsort(a, axis=1, kind="stable")
    srt = np.take_along_axis(a, order, axis=1)
    dup_sorted = np.zeros(a.shape, bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.zeros(a.shape, bool)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def _draw_impressions(rng, users, uidx, index, ev_u, item, ts, offs, params, t0, cutoff_s):
    lens = np.diff(offs)
    n_req = np.clip(1 + lens // 10, 1, params.max_requests)
    req_user = np.repeat(np.arange(uidx.size), n_req)
    r_n = req_user.size
    # Position in the history: after at least min(3, len) events; the request comes between events.
    lo = np.minimum(3, lens[req_user] - 1)
    j = lo + (rng.random(r_n) * (lens[req_user] - lo)).astype(np.int64)  # index of last event seen
    g = offs[req_user] + j
    nxt = np.where(j + 1 < lens[req_user], ts[np.minimum(g + 1, ts.size - 1)], ts[g] + 3600)
    gap = np.maximum(nxt - ts[g], 2)
    req_ts = ts[g] + 1 + (rng.random(r_n) * (gap - 1) * 0.9).astype(np.int64)
    # History actually before the request (events may share a timestamp): count with searchsorted.
    key_ev = ev_u.astype(np.int64) * (1 << 40) + ts
    key_rq = req_user.astype(np.int64) * (1 << 40) + req_ts
    # One slate per (user, time): drop a request that repeats another's time (sorted by key).
    key_rq, first = np.unique(key_rq, return_index=True)
    req_user, req_ts = req_user[first], req_ts[first]
    r_n = req_user.size
    g_end = np.searchsorted(key_ev, key_rq, side="left")  # exclusive end of history in chunk arrays
    # Last RECENT_WINDOW history items (most recent first), -1 where the history is shorter.
    a = np.arange(RECENT_WINDOW)
    hist_g = g_end[:, None] - 1 - a[None, :]
    valid = hist_g >= offs[req_user][:, None]
    hist = np.where(valid, item[np.maximum(hist_g, 0)], -1)
    # Candidates: 4 related to one of the last 6 items, 3 popular, 3 from the user's tastes.
    # Different anchors for the 4 related candidates where the history allows.
    pick4 = (rng.random((r_n, 4)) * np.minimum(6, valid.sum(axis=1))[:, None]).astype(np.int64)
    anchors = hist[np.arange(r_n)[:, None], pick4].reshape(-1)
    rel = index.related(rng, anchors, p_style=0.35, p_brand=0.25).reshape(r_n, 4)
    pop = index.by_popularity(rng, r_n * 3).reshape(r_n, 3)
    cum = np.cumsum(users.taste[uidx[req_user]], axis=1)
    tc = np.stack([_sample_rows(rng, cum) for _ in range(3)], axis=1)
    tst = index.in_category(rng, tc.reshape(-1)).reshape(r_n, 3)
    cands = np.concatenate([rel, pop, tst], axis=1)
    perm = np.argsort(rng.random((r_n, SLATE)), axis=1)
    cands = np.take_along_axis(cands, perm, axis=1)  # column = position - 1
    # Only products on sale at the request, each at most once per slate.
    t_flat = np.repeat(req_ts, SLATE)
    for _ in range(10):
        cands = index.make_available(
            rng, cands.reshape(-1), t_flat, lambda i: index.by_popularity(rng, i.size)
        ).reshape(r_n, SLATE)
        dup = _row_duplicates(cands)
        if not dup.any():
            break
        cands[dup] = index.by_popularity(rng, int(dup.sum()))
    # Click model.
    v = index.vectors
    hv = v[np.maximum(hist, 0)]  # (R, W, dim)
    cv = v[cands]  # (R, K, dim)
    sim = np.einsum("rkd,rwd->rkw", cv, hv)
    decay = RECENCY ** a.astype(np.float64)
    sim = np.where(valid[:, None, :], sim * decay[None, None, :], -1.0)
    recent = sim.max(axis=2)
    taste = users.taste[uidx[req_user]][np.arange(r_n)[:, None], index.cat[cands]]
    pos = np.arange(1, SLATE + 1)[None, :]
    logit = (
        BIAS + W_SIM * recent + W_POP * index.logpop_z[cands] + W_TASTE * taste - W_POS * (pos - 1)
    )
    p_click = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(p_click.shape) < p_click).astype(np.int8)
    req_ts_ns = t0 + req_ts.astype("timedelta64[s]").astype("timedelta64[ns]")
    user_ids = users.users["user_id"].to_numpy()[uidx[req_user]]
    order = np.lexsort((np.arange(r_n), req_ts, req_user))
    rows = np.repeat(order, SLATE) * SLATE + np.tile(np.arange(SLATE), r_n)
    imps = pd.DataFrame(
        {
            "user_id": np.repeat(user_ids[order], SLATE),
            "product_id": index.ids[cands.reshape(-1)[rows]],
            "ts": np.repeat(req_ts_ns[order], SLATE),
            "position": np.tile(np.arange(1, SLATE + 1, dtype=np.int16), r_n),
            "label": label.reshape(-1)[rows],
            "split": np.where(np.repeat(req_ts[order], SLATE) >= cutoff_s, "test", "train"),
        }
    )
    truth = pd.DataFrame(
        {
            "user_id": imps["user_id"].to_numpy(),
            "ts": imps["ts"].to_numpy(),
            "position": imps["position"].to_numpy(),
            "product_id": imps["product_id"].to_numpy(),
            "p_click": p_click.reshape(-1)[rows],
            "recent_similarity": recent.reshape(-1)[rows],
        }
    )
    return imps, truth
