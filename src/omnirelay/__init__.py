"""omnirelay: a self-hostable omnichannel messaging gateway (Infobip OMNI API)."""
