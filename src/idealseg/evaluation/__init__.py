"""Metrics (Dice, HD95, ASD in mm), evaluation of a run or of any masks, reports and figures."""
