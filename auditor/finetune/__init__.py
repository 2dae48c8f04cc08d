"""The reference fine-tune on cached feature maps, and the user's own training history."""
