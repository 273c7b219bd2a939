# Inputs of the Floe GCP module. The project, region, network placement and
# client CIDRs are required; everything else has a production-leaning
# default.

variable "project_id" {
  description = "Project to deploy into. It needs the compute, sqladmin, servicenetworking, secretmanager and storage APIs enabled."
  type        = string
}

variable "region" {
  description = "Region of the agents, the catalog, the load balancer and (by default) the bucket."
  type        = string
}

variable "zones" {
  description = "Zones to spread the agents over. Defaults to every zone of the region. The instance group keeps the zones it is created with: a later change (here, or a zone added to the region) is ignored with a warning, since changing them replaces the group, deleting every agent first."
  type        = list(string)
  default     = null

  validation {
    condition     = var.zones == null ? true : length(var.zones) > 0
    error_message = "zones must name at least one zone, or be null for every zone of the region."
  }
}

variable "name" {
  description = "Name prefix for every resource, and the Floe cluster name (--cluster) unless cluster_name is set."
  type        = string
  default     = "floe"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of lower-case letters, digits and dashes, starting with a letter (service account ids are short)."
  }
}

variable "cluster_name" {
  description = "Floe cluster name passed to every agent as --cluster; objects are keyed under it. Defaults to name."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- Network ---------------------------------------------------------------

variable "network" {
  description = "Name of the VPC network to deploy into."
  type        = string
}

variable "subnetwork" {
  description = "Name of the subnetwork (in var.region) for the agents and the internal load balancer. Agents have no external IP: give the subnetwork Private Google Access, and Cloud NAT if the image comes from outside Google."
  type        = string
}

variable "create_private_service_access" {
  description = "Create the private services access range and peering Cloud SQL's private IP needs. Set false when the network already has one (a network can have only one)."
  type        = bool
  default     = true
}

variable "private_service_access_prefix_length" {
  description = "Prefix length of the range reserved for private services access."
  type        = number
  default     = 20
}

variable "public_load_balancer" {
  description = "Use an external passthrough Network Load Balancer for bootstrap instead of an internal one. Clients still connect to agents at their advertised internal IPs after bootstrap, so they need a route to the VPC either way."
  type        = bool
  default     = false
}

variable "client_cidrs" {
  description = "CIDR blocks allowed to reach the Kafka port (the producers and consumers)."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) > 0 && alltrue([for c in var.client_cidrs : can(cidrnetmask(c))])
    error_message = "client_cidrs must list at least one IPv4 CIDR block."
  }
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to reach the agents' admin port (/metrics, /healthz, /readyz, pprof). Google's health checkers are always allowed."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrnetmask(c))])
    error_message = "admin_cidrs must be IPv4 CIDR blocks."
  }
}

variable "kafka_port" {
  description = "Port the agents (and the load balancer) serve the Kafka protocol on."
  type        = number
  default     = 9092
}

variable "admin_port" {
  description = "Port of the agents' admin HTTP server."
  type        = number
  default     = 9644
}

# --- Agents ----------------------------------------------------------------

variable "image" {
  description = "Floe container image the agents run, with a tag or a digest. Pin a release (…/floe:vX.Y.Z or …/floe@sha256:…) in production: changing it rolls the instance group, but an agent also pulls its image at every start (keeping the cached one if the registry cannot be reached), so with a moving tag such as latest a restarted agent can come back on a newer release, which migrates the catalog schema as it starts."
  type        = string
  default     = "ghcr.io/floebroker/floe:latest"

  validation {
    # The last path element's :tag, or @sha256:digest; a registry's :port
    # is not a tag.
    condition     = can(regex("(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must name its version: a tag (…/floe:vX.Y.Z) or a digest (…/floe@sha256:…)."
  }
}

variable "machine_type" {
  description = "Machine type of the agents."
  type        = string
  default     = "n2-standard-2"
}

variable "source_image" {
  description = "Boot image of the agents: Container-Optimized OS, whose startup script runs the container. Its architecture must match machine_type."
  type        = string
  default     = "projects/cos-cloud/global/images/family/cos-stable"
}

variable "boot_disk_size_gb" {
  description = "Boot disk size of each agent; the WAL lives on it (a few flush intervals of produce traffic)."
  type        = number
  default     = 30
}

variable "min_replicas" {
  description = "Minimum number of agents. Two or more keep the cluster available through an instance or zone loss."
  type        = number
  default     = 2

  validation {
    condition     = var.min_replicas >= 1
    error_message = "min_replicas must be at least 1."
  }
}

variable "max_replicas" {
  description = "Maximum number of agents the autoscaler may scale out to."
  type        = number
  default     = 6

  validation {
    condition     = var.max_replicas >= var.min_replicas
    error_message = "max_replicas must be at least min_replicas."
  }
}

variable "cpu_target" {
  description = "Average CPU utilisation (0-1) the autoscaler keeps the agents at."
  type        = number
  default     = 0.6

  validation {
    condition     = var.cpu_target > 0.1 && var.cpu_target < 0.95
    error_message = "cpu_target must be between 0.1 and 0.95."
  }
}

# --- Floe agent settings (flags of `floe agent`) ---------------------------

variable "flush_interval" {
  description = "--flush-interval: the longest a produce waits for its segment to be uploaded. Lower means lower produce latency and more PUTs (see docs/operations.md)."
  type        = string
  default     = "250ms"
}

variable "flush_bytes" {
  description = "--flush-bytes: seal a segment early once it holds this many bytes."
  type        = number
  default     = 8388608
}

variable "auto_create_topics" {
  description = "--auto-create-topics: create a topic when a client first produces to or fetches it."
  type        = bool
  default     = false
}

variable "default_partitions" {
  description = "--default-partitions: partition count of auto-created topics and of CreateTopics requests that leave it to the broker."
  type        = number
  default     = 6
}

variable "log_level" {
  description = "--log-level of the agents: debug, info, warn or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}

# --- Bucket ----------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the GCS bucket holding the segment objects. Defaults to a generated name starting with var.name."
  type        = string
  default     = null
}

variable "bucket_location" {
  description = "Location of the bucket. Defaults to the region (a multi-region location adds cross-region replication and cost)."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete the bucket with every record in it. Leave false outside of test environments."
  type        = bool
  default     = false
}

variable "bucket_soft_delete_seconds" {
  description = "GCS soft-delete retention. Compaction deletes and rewrites objects all day, and soft-deleted bytes are billed, so the default is 0 (off); catalog backups do not restore deleted objects anyway."
  type        = number
  default     = 0
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/…/locations/…/keyRings/…/cryptoKeys/…) that encrypts, at rest, the segment bucket's objects (its default key), the catalog's Cloud SQL disk and the agents' boot disks; it must be in the bucket's and the catalog's location. The module grants roles/cloudkms.cryptoKeyEncrypterDecrypter on it to the Cloud Storage, Cloud SQL and Compute Engine service agents of var.project_id, which encrypt with it, so whoever applies needs to set the key's IAM policy (roles/cloudkms.admin on the key). Null uses Google-managed keys."
  type        = string
  default     = null
}

# --- Catalog (Cloud SQL PostgreSQL) ----------------------------------------

variable "db_tier" {
  description = "Cloud SQL machine tier of the catalog. Every produce flush is one catalog transaction per agent per flush interval; see docs/operations.md for sizing."
  type        = string
  default     = "db-custom-2-7680"
}

variable "db_version" {
  description = "Cloud SQL database version of the catalog."
  type        = string
  default     = "POSTGRES_16"
}

variable "db_availability_type" {
  description = "REGIONAL (a standby in another zone, automatic failover) or ZONAL. The catalog is on every produce's path: keep REGIONAL in production."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.db_availability_type)
    error_message = "db_availability_type must be REGIONAL or ZONAL."
  }
}

variable "db_disk_size_gb" {
  description = "Initial catalog disk size in GB (it grows automatically)."
  type        = number
  default     = 50
}

variable "db_backup_count" {
  description = "Number of daily catalog backups kept; point-in-time recovery covers the last 7 days."
  type        = number
  default     = 14
}

variable "db_deletion_protection" {
  description = "Protect the catalog from deletion. Losing the catalog loses the order of every record in the bucket."
  type        = bool
  default     = true
}

variable "db_name" {
  description = "Database name of the catalog."
  type        = string
  default     = "floe"
}

variable "db_username" {
  description = "Catalog user the agents connect as."
  type        = string
  default     = "floe"
}

variable "db_password_version" {
  description = "Bump to generate a new catalog password. The password is written to Cloud SQL and Secret Manager through write-only arguments and never stored in state; the instance group then rolls so agents read the new one."
  type        = number
  default     = 1
}
