"""The tutorial's ``ChatMessage`` model (Getting Started, "Models")."""
