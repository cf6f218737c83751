"""Zoo sources: model metadata into the store (local folders, the Hugging Face Hub, the FiftyOne zoo)."""
