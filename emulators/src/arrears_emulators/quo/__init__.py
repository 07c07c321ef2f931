"""QUO (OpenPhone) SMS API emulator."""
