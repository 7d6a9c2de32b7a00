"""Networks: the SSL4MIS-style 2D U-Net encoder, two decoder designs, and projection heads."""
