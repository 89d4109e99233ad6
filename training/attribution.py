"""Reasons fast enough for order entry: every leaf's path attribution, tabulated once per model.

Exact TreeSHAP costs milliseconds per row on a few hundred trees. The path attribution of a
tree (Saabas) gives each split on the way to a leaf the change of expected value it causes, so
it depends only on the leaf reached: tabulated per (tree, leaf) from the model dump, one
``pred_leaf`` call then yields both the margin and every feature's contribution, and the
contributions add up exactly to ``margin - expected_value_``.

A batch is one sparse product: the rows' one-hot leaf matrix (one 1 per tree) times the dense
(tree x leaf, feature) table; about 5x faster than gathering each row's path entries.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from pathlib import Path

import numpy as np
import lightgbm as lgb

from .compiled import CompiledTrees, NotCompilable, compile_trees

_ROWS_PER_PASS = 50_000  # bounds the one-hot leaf matrix of a pass (rows x trees entries)
#: a batch of this many rows compiles the trees first; smaller calls use them once they are ready
COMPILE_FROM_ROWS = 2_000


class LeafAttribution:
    """Per-leaf values and path attributions of a LightGBM binary model.

    ``value_[t, l]`` is the output of leaf ``l`` of tree ``t``; ``feature_[t, l, d]`` and
    ``delta_[t, l, d]`` list the split features on its path and what each changed (padding
    adds 0 to feature 0)."""

    def __init__(self, booster: lgb.Booster, cache_dir: Path | None = None) -> None:
        self.booster = booster
        #: where the compiled trees are kept (by the hash of their source); None: not compiled
        #: (a model just trained and not yet saved scores through ``Booster.predict``)
        self.cache_dir = cache_dir
        self._compiled: CompiledTrees | None = None
        self._compile_tried = False
        self._compile_lock = threading.Lock()
        #: why the trees are not compiled, when they are not (batches then use ``pred_leaf``)
        self.compiled_error: str | None = None
        dump = booster.dump_model()
        self.n_features_ = int(dump["max_feature_idx"]) + 1
        trees = [t["tree_structure"] for t in dump["tree_info"]]
        paths: list[dict[int, tuple[float, list[tuple[int, float]]]]] = []
        roots = 0.0
        for root in trees:
            leaves: dict[int, tuple[float, list[tuple[int, float]]]] = {}
            if "leaf_index" not in root:
                roots += float(root["internal_value"])
            stack = [(root, [])]
            while stack:
                node, path = stack.pop()
                if "leaf_index" in node:
                    leaves[int(node["leaf_index"])] = (float(node["leaf_value"]), path)
                    continue
                for child in (node["left_child"], node["right_child"]):
                    child_value = child["leaf_value"] if "leaf_index" in child else child["internal_value"]
                    step = float(child_value) - float(node["internal_value"])
                    stack.append((child, path + [(int(node["split_feature"]), step)]))
            if "leaf_index" in root:  # a tree of one leaf moves every row alike
                roots += float(root["leaf_value"])
                leaves = {0: (0.0, [])}
            paths.append(leaves)
        n_trees = len(paths)
        n_leaves = max((max(p) + 1 for p in paths), default=1)
        depth = max((len(path) for p in paths for _, path in p.values()), default=0) or 1
        self.value_ = np.zeros((n_trees, n_leaves))
        self.feature_ = np.zeros((n_trees, n_leaves, depth), dtype=np.int32)
        self.delta_ = np.zeros((n_trees, n_leaves, depth))
        for t, leaves in enumerate(paths):
            for leaf, (value, path) in leaves.items():
                self.value_[t, leaf] = value
                for d, (f, step) in enumerate(path):
                    self.feature_[t, leaf, d] = f
                    self.delta_[t, leaf, d] = step
        self._trees = np.arange(n_trees)
        # (tree, leaf) flattened, for the one-row path: one take per table
        self._offset = self._trees * n_leaves
        self._flat_value = self.value_.ravel()
        self._flat_feature = self.feature_.reshape(n_trees * n_leaves, depth)
        self._flat_delta = self.delta_.reshape(n_trees * n_leaves, depth)
        self._single = _SingleRowLeaves.create(booster, self.n_features_, n_trees)
        #: contributions per (tree, leaf) as one dense (trees x leaves, features) table
        self.table_ = np.zeros((n_trees * n_leaves, self.n_features_))
        np.add.at(self.table_, (np.repeat(np.arange(n_trees * n_leaves), depth), self._flat_feature.ravel()),
                  self._flat_delta.ravel())
        #: the margin of a row that moves nothing: the trees' expected values (init score included)
        self.expected_value_ = roots

    def compiled(self) -> CompiledTrees | None:
        """The compiled trees, built on first use; None where they cannot be (``compiled_error``)."""
        if not self._compile_tried:
            with self._compile_lock:
                if not self._compile_tried:
                    try:
                        if self.cache_dir is None:
                            raise NotCompilable("no folder to keep the compiled trees in")
                        self._compiled = compile_trees(self.booster.dump_model(), self.value_, self.table_,
                                                       self.cache_dir)
                    except Exception as exc:  # noqa: BLE001 - any failure: LightGBM predicts instead
                        self.compiled_error = f"{type(exc).__name__}: {exc}"
                    self._compile_tried = True
        return self._compiled

    def _fast(self, n: int, may_compile: bool = True) -> CompiledTrees | None:
        """The compiled trees for ``n`` rows once they are ready; a batch of at least
        ``COMPILE_FROM_ROWS`` compiles them first unless ``may_compile=False`` (a call under a
        time budget, which never waits for a compile)."""
        if not self._trees.size or (self._compiled is None and (n < COMPILE_FROM_ROWS or not may_compile)):
            return None
        return self.compiled()

    def margin(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Raw margin of the rows of ``X``: ``Booster.predict(raw_score=True)``, from the
        compiled trees once they are ready (equal to the last bit, tested)."""
        fast = self._fast(len(X))
        if fast is not None:
            return fast.margin(X, num_threads)
        kw = {"num_threads": num_threads} if num_threads else {}
        return self.booster.predict(X, raw_score=True, **kw)

    def explain(self, X: np.ndarray, num_threads: int | None = None, may_compile: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
        """Raw margin ``(n,)`` and contributions ``(n, features)`` of the rows of ``X``."""
        kw = {"num_threads": num_threads} if num_threads else {}
        n, f = X.shape[0], self.n_features_
        tree = self._trees
        fast = self._fast(n, may_compile)
        if n == 1 and tree.size:  # order entry: no chunking, no row offsets
            if fast is not None:
                return fast.explain_row(X[0])
            leaf = self._single.leaves(X[0]) if self._single is not None else None
            if leaf is None:
                leaf = self.booster.predict(X, pred_leaf=True, **kw).astype(np.intp).reshape(-1)
            at = self._offset + leaf
            contrib1 = np.bincount(self._flat_feature[at].ravel(), self._flat_delta[at].ravel(), minlength=f)
            return np.array([self._flat_value[at].sum()]), contrib1[None, :]
        if fast is not None:
            return fast.explain(X, threads=num_threads)
        from scipy.sparse import csr_matrix

        margin = np.zeros(n)
        contrib = np.zeros((n, f))
        if tree.size == 0:
            return margin, contrib
        for start in range(0, n, _ROWS_PER_PASS):
            part = X[start:start + _ROWS_PER_PASS]
            m = len(part)
            leaf = self.booster.predict(part, pred_leaf=True, **kw).astype(np.intp).reshape(m, -1)
            onehot = csr_matrix((np.ones(leaf.size), (self._offset[None, :] + leaf).ravel(),
                                 np.arange(0, leaf.size + 1, tree.size)), shape=(m, self.table_.shape[0]))
            margin[start:start + m] = onehot @ self._flat_value
            contrib[start:start + m] = onehot @ self.table_
        return margin, contrib


class _SingleRowLeaves:
    """Leaf indices of one row through LightGBM's single-row C entry point (~6 us against
    ~25 us for ``Booster.predict``, whose Python layer is built for matrices). One prepared
    handle per thread; ``create`` returns None where the entry point is missing."""

    _LEAF_INDEX, _FLOAT64 = 2, 1   # C_API_PREDICT_LEAF_INDEX, C_API_DTYPE_FLOAT64

    def __init__(self, booster: lgb.Booster, n_features: int, n_trees: int) -> None:
        from lightgbm.basic import _LIB, _safe_call, _c_str

        self._lib, self._check, self._c_str = _LIB, _safe_call, _c_str
        self.booster, self.n_features, self.n_trees = booster, n_features, n_trees
        best = booster.best_iteration
        self.num_iteration = best if best and best > 0 else -1
        self._local = threading.local()

    @classmethod
    def create(cls, booster: lgb.Booster, n_features: int, n_trees: int) -> "_SingleRowLeaves | None":
        try:
            fast = cls(booster, n_features, n_trees)
            fast._handle()
            return fast
        except (ImportError, AttributeError, lgb.basic.LightGBMError):
            return None

    def _handle(self) -> tuple[ctypes.c_void_p, np.ndarray, ctypes.c_int64]:
        local = self._local
        if not hasattr(local, "handle"):
            handle = ctypes.c_void_p()
            self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self.booster._handle, ctypes.c_int(self._LEAF_INDEX), ctypes.c_int(0),
                ctypes.c_int(self.num_iteration), ctypes.c_int(self._FLOAT64), ctypes.c_int32(self.n_features),
                self._c_str("num_threads=1"), ctypes.byref(handle)))
            weakref.finalize(local, self._lib.LGBM_FastConfigFree, handle)
            local.handle, local.out, local.out_len = handle, np.empty(self.n_trees), ctypes.c_int64()
        return local.handle, local.out, local.out_len

    def leaves(self, row: np.ndarray) -> np.ndarray:
        handle, out, out_len = self._handle()
        row = np.ascontiguousarray(row, dtype=np.float64)
        if row.size != self.n_features:
            raise ValueError(f"the model expects {self.n_features} features, got {row.size}")
        self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFast(
            handle, row.ctypes.data_as(ctypes.c_void_p), ctypes.byref(out_len),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        return out[:out_len.value].astype(np.intp)
