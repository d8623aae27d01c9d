"""jaguar-reid: re-identify individual animals from photos, Kaggle Jaguar Re-ID style."""

__version__ = "0.1.0"
