"""Fine-tuning: SFT, classification and preference (DPO) recipes, full or LoRA, from lmwright or HF bases."""
