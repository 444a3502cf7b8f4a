"""supervisor: the shmchannels master — config, sockets, forking, signals, systemd."""
