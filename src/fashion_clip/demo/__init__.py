"""The embedded demo catalogue: synthetic garments with Fashion-Gen-style captions, rendered offline."""
