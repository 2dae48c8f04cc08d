"""Pure renderers: Report → text. Nothing here computes or prints."""
