"""Inference (volume -> mask), metrics (Dice, HD95, ASD), reports and figures."""
