"""Sheet write-back: each row's outcome (Arrears Status / Arrears Reason) written to the sheet."""
