"""Losses: dense local contrastive, global NT-Xent, Dice + CE, bidirectional consistency."""
