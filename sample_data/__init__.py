"""Sample images shipped with augkit (see README.md here); the default input of every command."""
