"""The model's trees compiled to machine code: leaf, margin and path attribution in one pass.

``Booster.predict`` walks tree structures held as arrays; the same trees written out as C
``if``/``else`` code and compiled once per model walk several times faster, and the same pass
that finds each tree's leaf adds up the margin and every feature's contribution (the path
attribution of ``LeafAttribution``). The decisions replicate LightGBM's numerical split rule
(missing values as zero unless the split learned a side for them; a test compares the leaves
with ``pred_leaf`` on rows with missing values, zeros and values on the thresholds) and its
categorical one (a category code in the split's set goes left; a missing, negative or
unlisted one right).

Compiling needs a C compiler (``cc``); the shared library is cached under the model's folder
by the hash of its source, so a model compiles once. Where no compiler is found, or the model
uses what this module does not translate (linear trees), ``compile_trees`` raises
``NotCompilable`` and ``LeafAttribution`` keeps ``pred_leaf``, saying why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

#: LightGBM's kZeroThreshold (a float literal, 1e-35f, held as a double)
_ZERO = float(np.float32(1e-35))
#: -O1: as fast as -O2 on these trees (one function holding them all) and compiles in half the time
_FLAGS = ("-O1", "-shared", "-fPIC", "-fno-math-errno", "-std=c99")
_ROWS_PER_CALL = 8_192


class NotCompilable(ValueError):
    """The model holds a split this module does not translate."""


def _categories(node: dict[str, Any]) -> list[int]:
    """The category codes a categorical split sends left (the dump writes ``"1||4||5"``)."""
    try:
        cats = sorted({int(c) for c in str(node["threshold"]).split("||")})
    except ValueError:
        raise NotCompilable(f"categorical split on {node['threshold']!r}") from None
    if not cats or cats[0] < 0:
        raise NotCompilable(f"categorical split on {node['threshold']!r}")
    return cats


def _category_condition(node: dict[str, Any], x: str) -> str:
    """The C test of a categorical split, as LightGBM decides it: the value truncated to a
    whole number is looked up in the split's categories (a bitset); a missing or negative one
    goes right, whatever the split's missing type. A value beyond int32 goes right (the cast
    LightGBM makes gives a negative number there)."""
    cats = _categories(node)
    words = [0] * (cats[-1] // 32 + 1)
    for c in cats:
        words[c // 32] |= 1 << (c % 32)
    bits = "(const uint32_t[]){" + ", ".join(f"{w}u" for w in words) + "}"
    return f"CAT({x}, {bits}, {len(words)})"


def _condition(node: dict[str, Any]) -> str:
    """The C test that sends a row left at ``node``, as LightGBM decides it: a value with
    ``|v| <= ZERO`` counts as 0; a missing value goes the learned way (missing type ``NaN``),
    counts as zero (``None``), or goes the learned way with the zeros (``Zero``). One
    comparison wherever the threshold allows: ``!(v > t)`` holds for NaN, ``v <= t`` does not.
    A categorical split (``==``): ``_category_condition``."""
    x = f"x[{int(node['split_feature'])}]"
    kind = node.get("decision_type", "<=")
    if kind == "==":
        return _category_condition(node, x)
    if kind != "<=":
        raise NotCompilable(f"split of type {kind!r}")
    thr = float(node["threshold"])
    # the dump writes an infinite threshold (everything not missing goes left) as 1e300
    t = "INFINITY" if thr >= 1e300 else "-INFINITY" if thr <= -1e300 else repr(thr)
    missing = node.get("missing_type", "None")
    default_left = bool(node.get("default_left", False))
    near_zero = -_ZERO <= thr <= _ZERO  # only then can a tiny value and 0 fall on different sides
    if missing == "NaN":
        if near_zero:
            return f"(isnan({x}) ? {int(default_left)} : S({x}) <= {t})"
        return f"!({x} > {t})" if default_left else f"({x} <= {t})"
    if missing == "None":  # missing is 0: it goes where 0 goes
        if near_zero:
            return f"(S0({x}) <= {t})"
        return f"!({x} > {t})" if 0.0 <= thr else f"({x} <= {t})"
    if missing == "Zero":
        return f"(Z({x}) ? {int(default_left)} : {x} <= {t})"
    raise NotCompilable(f"missing type {missing!r}")


#: a categorical split's test: 1 when ``v`` is one of the categories of the bitset ``bits``
#: (``n`` words); a missing ``v`` fails ``v > -1`` and goes right
_CAT = """static inline int CAT(double v, const uint32_t* bits, int32_t n) {
  if (!(v > -1.0) || v >= 2147483648.0) return 0;
  const int32_t c = (int32_t)v;
  return c / 32 < n && ((bits[c / 32] >> (c % 32)) & 1u);
}"""


def _node(node: dict[str, Any], out: list[str], indent: str) -> None:
    if "leaf_index" in node:
        out.append(f"{indent}return {int(node['leaf_index'])};")
        return
    out.append(f"{indent}if ({_condition(node)}) {{")
    _node(node["left_child"], out, indent + "  ")
    out.append(f"{indent}}} else {{")
    _node(node["right_child"], out, indent + "  ")
    out.append(f"{indent}}}")


def _linear(node: dict[str, Any]) -> bool:
    """Whether a tree's leaves are linear models (the dump gives their coefficients, not a flag)."""
    if "leaf_index" in node:
        return "leaf_coeff" in node
    return _linear(node["left_child"]) or _linear(node["right_child"])


def c_source(dump: dict[str, Any]) -> str:
    """C source for the trees of a ``Booster.dump_model()``: ``rc_explain`` fills each row's
    margin, contributions and (optionally) leaf per tree."""
    if any(_linear(t["tree_structure"]) for t in dump["tree_info"]) or dump.get("is_linear"):
        raise NotCompilable("linear trees")
    out = [
        "#include <math.h>",
        "#include <stdint.h>",
        f"#define ZERO {_ZERO!r}",
        "#define S(v) (((v) >= -ZERO && (v) <= ZERO) ? 0.0 : (v))",
        "#define S0(v) ((isnan(v) || ((v) >= -ZERO && (v) <= ZERO)) ? 0.0 : (v))",
        "#define Z(v) (isnan(v) || ((v) >= -ZERO && (v) <= ZERO))",
        _CAT,
    ]
    trees = [t["tree_structure"] for t in dump["tree_info"]]
    for t, root in enumerate(trees):
        out.append(f"static inline int32_t tree_{t}(const double* x) {{")
        if "leaf_index" in root:
            out.append("  return 0;")
        else:
            _node(root, out, "  ")
        out.append("}")
    out.append(f"int32_t rc_n_trees(void) {{ return {len(trees)}; }}")
    out.append("""
/* path attribution: the entries start[at] .. start[at + 1] of (feature, delta) belong to leaf `at` */
#define LEAF(T) do { const int32_t leaf = tree_##T(x); const int64_t at = (int64_t)(T) * n_leaves + leaf; \
  m += value[at]; if (c) for (int32_t k = start[at]; k < start[at + 1]; k++) c[feature[k]] += delta[k]; \
  if (leaves) leaves[i * N_TREES + (T)] = leaf; } while (0)
""")
    out.append(f"#define N_TREES {len(trees)}")
    out.append("""
void rc_explain(const double* X, int64_t n, int64_t n_features, const double* value, const int32_t* start,
                const int32_t* feature, const double* delta, int32_t n_leaves, double* margin,
                double* contrib, int32_t* leaves) {
  for (int64_t i = 0; i < n; i++) {
    const double* x = X + i * n_features;
    double* c = contrib ? contrib + i * n_features : 0;
    double m = 0.0;""")
    out.extend(f"    LEAF({t});" for t in range(len(trees)))
    out.append("""    margin[i] = m;
  }
}
""")
    return "\n".join(out)


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build_library(source: str, cache_dir: Path) -> Path:
    """The shared library for ``source``, compiled into ``cache_dir`` unless already there."""
    key = hashlib.sha256((source + " ".join(_FLAGS)).encode()).hexdigest()[:20]
    lib = cache_dir / f"trees-{key}.so"
    if lib.exists():
        return lib
    cc = _compiler()
    if cc is None:
        raise NotCompilable("no C compiler (cc, gcc or clang) on the PATH")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        src, built = Path(tmp) / "trees.c", Path(tmp) / "trees.so"
        src.write_text(source)
        done = subprocess.run([cc, *_FLAGS, "-o", str(built), str(src), "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            raise NotCompilable(f"the C compiler failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        os.replace(built, lib)  # atomic: a concurrent build of the same model writes the same file
    return lib


class CompiledTrees:
    """A model's compiled trees with the per-leaf tables of its path attribution.

    ``value``: (trees, leaves) leaf outputs; ``table``: (trees x leaves, features) what each
    leaf's path adds to each feature's contribution, held sparse (a path has a few features)."""

    def __init__(self, library: Path, value: np.ndarray, table: np.ndarray, threads: int | None = None) -> None:
        from scipy.sparse import csr_matrix

        self.library = library
        self._lib = ctypes.CDLL(str(library))
        self._fn = self._lib.rc_explain
        self._fn.restype = None
        self.n_trees, self.n_leaves = value.shape
        self.n_features = table.shape[1]
        if self._lib.rc_n_trees() != self.n_trees or table.shape[0] != self.n_trees * self.n_leaves:
            raise NotCompilable("the compiled library does not match the model's trees")
        paths = csr_matrix(table)
        self.value = np.ascontiguousarray(value, dtype=np.float64)
        self.start = paths.indptr.astype(np.int32)
        self.feature = paths.indices.astype(np.int32)
        self.delta = paths.data.astype(np.float64)
        #: threads of a call unless it says otherwise (ctypes lets go of the GIL in the call)
        self.threads = threads or min(os.cpu_count() or 1, 8)
        p = ctypes.c_void_p
        # the model's tables as call arguments, made once (the arrays live as long as this object)
        self._tables = (ctypes.c_int64(self.n_features), p(self.value.ctypes.data), p(self.start.ctypes.data),
                        p(self.feature.ctypes.data), p(self.delta.ctypes.data), ctypes.c_int32(self.n_leaves))

    def _rows(self, X: np.ndarray) -> np.ndarray:
        """``X`` as the C code reads it: contiguous float64 rows of the model's features."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"the model expects rows of {self.n_features} features, got shape {X.shape}")
        return X

    def _run(self, X: np.ndarray, margin: np.ndarray, contrib: np.ndarray, leaves: np.ndarray | None) -> None:
        p = ctypes.c_void_p
        self._fn(p(X.ctypes.data), ctypes.c_int64(len(X)), *self._tables, p(margin.ctypes.data),
                 p(contrib.ctypes.data) if contrib is not None else None,
                 p(leaves.ctypes.data) if leaves is not None else None)

    def explain_row(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One row's margin ``(1,)`` and contributions ``(1, features)`` in a single call, without
        a batch's blocks and threads: what one order costs (~10 us against ~35 us through
        ``pred_leaf`` and the leaf tables)."""
        X = self._rows(np.reshape(x, (1, -1)))
        margin, contrib = np.zeros(1), np.zeros((1, self.n_features))
        self._run(X, margin, contrib, None)
        return margin, contrib

    def margin(self, X: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Raw margin ``(n,)`` alone (what ``Booster.predict(raw_score=True)`` returns)."""
        return self._blocks(X, False, False, threads)[0]

    def explain(self, X: np.ndarray, with_leaves: bool = False, threads: int | None = None
                ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw margin ``(n,)``, contributions ``(n, features)`` and, if asked, leaves ``(n, trees)``."""
        margin, contrib, leaves = self._blocks(X, True, with_leaves, threads)
        return (margin, contrib, leaves) if with_leaves else (margin, contrib)

    def _blocks(self, X: np.ndarray, with_contrib: bool, with_leaves: bool, threads: int | None
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        X = self._rows(X)
        n = len(X)
        margin = np.zeros(n)
        contrib = np.zeros((n, self.n_features)) if with_contrib else None
        leaves = np.zeros((n, self.n_trees), dtype=np.int32) if with_leaves else None

        def run(a: int, b: int) -> None:
            self._run(X[a:b], margin[a:b], contrib[a:b] if contrib is not None else None,
                      leaves[a:b] if leaves is not None else None)

        blocks = [(s, min(s + _ROWS_PER_CALL, n)) for s in range(0, n, _ROWS_PER_CALL)]
        threads = threads or self.threads
        if threads == 1 or len(blocks) < 2:
            for a, b in blocks:
                run(a, b)
            return margin, contrib, leaves
        todo = iter(blocks)  # ctypes lets go of the GIL during the call: one block per thread at a time
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    block = next(todo, None)
                if block is None:
                    return
                run(*block)

        workers = [threading.Thread(target=work) for _ in range(min(threads, len(blocks)))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return margin, contrib, leaves


def compile_trees(dump: dict[str, Any], value: np.ndarray, table: np.ndarray, cache_dir: Path) -> CompiledTrees:
    """The compiled form of a model dump (NotCompilable says why not)."""
    return CompiledTrees(build_library(c_source(dump), cache_dir), value, table)
