"""The one service layer: plain values and an Actor in, results or DomainErrors out. No Flask requests here."""
