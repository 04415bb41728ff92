"""Identity at the island's front doors: tokens and the authentication of callers."""
