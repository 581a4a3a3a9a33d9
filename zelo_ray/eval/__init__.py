"""IR evaluation: per-query metrics (pytrec_eval) with bootstrap confidence intervals."""
