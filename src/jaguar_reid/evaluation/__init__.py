"""Evaluation: leaderboard metrics (pure functions), submission scoring, the chain's ablation and diagnostics."""
