"""The Llama-architecture decoder, its configuration and its Hugging Face form."""
