# Inputs of the Floe AWS module. Only the network placement and the client
# CIDRs are required; every other input has a production-leaning default.

variable "name" {
  description = "Name prefix for every resource, and the Floe cluster name (--cluster) unless cluster_name is set. At most 27 characters, or 31 with bucket_name set: the names made from it have limits of their own (the bucket_prefix \"<name>-segments-\" 37 characters, the IAM role's name_prefix \"<name>-agent-\" 38)."
  type        = string
  default     = "floe"

  # Every name made from it must be valid: the generated bucket's
  # bucket_prefix takes 37 characters (name-segments-), the IAM role's and
  # instance profile's name_prefix 38 (name-agent-), and the RDS identifier
  # (name-catalog) no two dashes in a row. Needs Terraform 1.9 (a validation
  # referring to another variable).
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]+[a-z0-9]$", var.name)) && !can(regex("--", var.name)) && length(var.name) <= (var.bucket_name == null ? 27 : 31)
    error_message = "name must be 3-27 characters (31 with bucket_name set) of lower-case letters, digits and single dashes, starting with a letter and not ending with a dash."
  }
}

variable "cluster_name" {
  description = "Floe cluster name passed to every agent as --cluster; objects are keyed under it. Defaults to name."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

# --- Network ---------------------------------------------------------------

variable "vpc_id" {
  description = "VPC to deploy into."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the agents, the catalog and the load balancer, one per availability zone: the Network Load Balancer takes at most one subnet per zone (more per zone only with load_balancer_subnet_ids set). Agents are spread across their zones; use at least two zones (three recommended)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Give at least two subnets (RDS needs two availability zones)."
  }
}

variable "load_balancer_subnet_ids" {
  description = "Subnets for the bootstrap load balancer, at most one per availability zone. Defaults to subnet_ids; give public subnets when public_load_balancer is true."
  type        = list(string)
  default     = null
}

variable "public_load_balancer" {
  description = "Make the bootstrap Network Load Balancer internet-facing. Clients still connect to agents at their advertised private IPs after bootstrap, so they need a route to the VPC (VPN, peering, Direct Connect) either way."
  type        = bool
  default     = false
}

variable "client_cidrs" {
  description = "CIDR blocks allowed to reach the Kafka port of the agents and of the load balancer (the producers and consumers)."
  type        = list(string)

  validation {
    condition     = length(var.client_cidrs) > 0 && alltrue([for c in var.client_cidrs : can(cidrnetmask(c))])
    error_message = "client_cidrs must list at least one IPv4 CIDR block."
  }
}

variable "admin_cidrs" {
  description = "CIDR blocks allowed to reach the agents' admin port (/metrics, /healthz, /readyz, pprof): your Prometheus and operators. Empty allows only the load balancer health checks."
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
  description = "Floe container image the agents run, with a tag or a digest. Pin a release (…/floe:vX.Y.Z or …/floe@sha256:…) in production: changing it rolls the fleet through an instance refresh, but an agent also pulls its image at every start (keeping the cached one if the registry cannot be reached), so with a moving tag such as latest a restarted agent can come back on a newer release, which migrates the catalog schema as it starts."
  type        = string
  default     = "ghcr.io/floebroker/floe:latest"

  validation {
    # The last path element's :tag, or @sha256:digest; a registry's :port
    # is not a tag.
    condition     = can(regex("(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must name its version: a tag (…/floe:vX.Y.Z) or a digest (…/floe@sha256:…)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the agents. Its architecture must match var.architecture."
  type        = string
  default     = "m7g.large"
}

variable "architecture" {
  description = "CPU architecture of the agents' AMI: arm64 (Graviton) or x86_64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "ami_id" {
  description = "AMI for the agents. Defaults to the latest Amazon Linux 2023 for var.architecture, read from SSM at every plan: the first apply after AWS publishes a new one changes the launch template and so rolls every agent, whatever else the apply was for. Pin an AMI id to choose when that happens. The user data needs dnf, curl, python3 and the AWS CLI."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of each agent's gp3 root volume, which also holds the WAL (a few flush intervals of produce traffic: small)."
  type        = number
  default     = 30
}

variable "min_size" {
  description = "Minimum number of agents. Two or more keep the cluster available through an instance or zone loss."
  type        = number
  default     = 2

  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1."
  }
}

variable "max_size" {
  description = "Maximum number of agents the CPU target tracking policy may scale out to."
  type        = number
  default     = 6

  validation {
    condition     = var.max_size >= var.min_size
    error_message = "max_size must be at least min_size."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation the Auto Scaling group's target tracking policy keeps the agents at."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent > 10 && var.cpu_target_percent < 95
    error_message = "cpu_target_percent must be between 10 and 95."
  }
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore so operators can open shells with Session Manager (no SSH keys, no open port)."
  type        = bool
  default     = true
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
  description = "Name of the S3 bucket holding the segment objects. Defaults to a generated name starting with var.name."
  type        = string
  default     = null
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete the bucket with every record in it. Leave false outside of test environments."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key that encrypts, at rest, the segment bucket (SSE-KMS), the catalog's RDS storage, Performance Insights data and master-password secret, and the agents' EBS root volumes. The module grants the Auto Scaling service-linked role (AWSServiceRoleForAutoScaling, which must exist: AWS creates it with an account's first Auto Scaling group, or run `aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com`) use of the key for the volumes, and the agents' role kms:Decrypt and kms:GenerateDataKey; the key policy must let IAM policies of this account grant access (the default key policy does), and whoever applies needs kms:CreateGrant and kms:DescribeKey on it. Null uses S3-managed keys (SSE-S3) and the RDS and EBS default keys."
  type        = string
  default     = null
}

# --- Catalog (RDS PostgreSQL) ----------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class of the catalog. Every produce flush is one catalog transaction per agent per flush interval; see docs/operations.md for sizing."
  type        = string
  default     = "db.m7g.large"
}

variable "db_engine_version" {
  description = "PostgreSQL major (or major.minor) version of the catalog."
  type        = string
  default     = "16"
}

variable "db_allocated_storage_gb" {
  description = "Initial catalog storage in GiB."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage_gb" {
  description = "Upper bound for RDS storage autoscaling, in GiB."
  type        = number
  default     = 500
}

variable "db_multi_az" {
  description = "Run the catalog Multi-AZ (a synchronous standby in another zone). The catalog is on every produce's path: keep this on in production."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of automated catalog backups (point-in-time recovery window)."
  type        = number
  default     = 14
}

variable "db_deletion_protection" {
  description = "Protect the catalog from deletion. Losing the catalog loses the order of every record in the bucket."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Skip the final snapshot when the catalog is destroyed. Only for throwaway environments."
  type        = bool
  default     = false
}

variable "db_name" {
  description = "Database name of the catalog."
  type        = string
  default     = "floe"
}

variable "db_username" {
  description = "Master user of the catalog. Its password is generated and kept by RDS in Secrets Manager (never in Terraform state)."
  type        = string
  default     = "floe"
}
