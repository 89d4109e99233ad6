"""A synthetic book's ledger as a firm's own system exports it: the invoices alone, in the
export's column names and US dates, with the mapping file that reads them.

Why: "Bring your own data" has to be shown on a file that looks like a real export, not on
riskcast's own layout; the test suite runs ``features``, ``train``, ``rescore`` and ``monitor``
on it. The export holds what an accounts-receivable ledger holds and no more: document number,
account, document and due dates (M/D/YYYY), gross amount, the amount and day it was cleared,
a dispute flag without a date, and a currency column riskcast does not read. No customers,
statements, industry signals or defaults.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from riskcast.config import GeneratorConfig

from .io import atomic_path

LEDGER_FILE = "ar_ledger.csv"
MAPPING_FILE = "mapping.toml"
#: the export's layout: month first, no leading zeros (3/7/2025)
DATE_FORMAT = "%m/%d/%Y"

MAPPING = f'''# The ledger export {LEDGER_FILE} read as riskcast's invoices table; no other table is given.
[invoices]
file = "{LEDGER_FILE}"
[invoices.columns]
invoice_id = "DocNo"
customer_id = "Account"
issue_date = {{ column = "DocDate", format = "{DATE_FORMAT}" }}
due_date = {{ column = "DueDate", format = "{DATE_FORMAT}" }}
amount = "Gross"
paid_date = {{ column = "ClearedOn", format = "{DATE_FORMAT}" }}
paid_amount = "ClearedAmount"
disputed = "Dispute"
'''


def _us_dates(dates: pd.Series) -> pd.Series:
    """M/D/YYYY text, empty where there is no date."""
    d = pd.to_datetime(dates)
    text = d.dt.month.astype("Int64").astype("string") + "/" + d.dt.day.astype("Int64").astype("string") \
        + "/" + d.dt.year.astype("Int64").astype("string")
    return text.fillna("")


def ledger_export(invoices: pd.DataFrame) -> pd.DataFrame:
    """The invoices table in the export's layout (a pure step: table in, table out)."""
    paid = invoices["paid_date"].notna()
    cleared = invoices["paid_amount"].where(paid, np.nan)
    return pd.DataFrame({
        "DocNo": invoices["invoice_id"].astype(str).to_numpy(),
        "Account": invoices["customer_id"].astype(str).to_numpy(),
        "DocDate": _us_dates(invoices["issue_date"]).to_numpy(),
        "DueDate": _us_dates(invoices["due_date"]).to_numpy(),
        "Gross": invoices["amount"].round(2).map("{:.2f}".format).to_numpy(),
        "Currency": "EUR",
        "ClearedOn": _us_dates(invoices["paid_date"]).to_numpy(),
        "ClearedAmount": cleared.map(lambda v: "" if pd.isna(v) else f"{v:.2f}").to_numpy(),
        "Dispute": np.where(invoices["disputed"].to_numpy(bool), "Y", "N"),
    })


def write_ledger_export(config: GeneratorConfig, directory: str | Path, progress=None) -> dict[str, tuple[Path, int]]:
    """Generate the book of ``config`` and write only its ledger export and the mapping file
    into ``directory``, each atomically. Returns name -> (path, rows)."""
    from .synthetic import book_parts

    directory = Path(directory)
    rows = 0
    with atomic_path(directory / LEDGER_FILE) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            header = True
            for name, part in book_parts(config, progress):
                if name != "invoices":
                    continue
                ledger_export(part).to_csv(out, index=False, header=header)
                header = False
                rows += len(part)
    with atomic_path(directory / MAPPING_FILE) as tmp:
        tmp.write_text(MAPPING, encoding="utf-8")
    return {"ledger": (directory / LEDGER_FILE, rows), "mapping": (directory / MAPPING_FILE, 0)}
