primary_datacenter = "primary"
