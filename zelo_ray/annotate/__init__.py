"""The judging stage: pairs → judge calls → durable votes → Elo → calibrated targets."""
