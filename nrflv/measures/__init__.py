"""Pure, batched measures of recorded activity (torch; any device)."""
