"""Models: the open_clip front door and the LightningModule that trains it."""
