# We don't want an s1/s2 service
