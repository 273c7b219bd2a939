# A Floe cluster in an existing VPC: two to six agents across the subnets'
# zones, an internal bootstrap load balancer, S3 and RDS PostgreSQL.
#
#   terraform init
#   terraform apply -var vpc_id=vpc-0123 -var 'subnet_ids=["subnet-a","subnet-b","subnet-c"]' \
#     -var 'client_cidrs=["10.0.0.0/8"]'
#   kcat -b "$(terraform output -raw bootstrap_address)" -L

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project = "floe-example"
    }
  }
}

module "floe" {
  source = "../.."

  name         = var.name
  vpc_id       = var.vpc_id
  subnet_ids   = var.subnet_ids
  client_cidrs = var.client_cidrs
  admin_cidrs  = var.admin_cidrs
  image        = var.image

  min_size = 2
  max_size = 6

  # A throwaway example: let destroy remove everything. Production keeps
  # the defaults (deletion protection, final snapshot, no force destroy).
  bucket_force_destroy   = true
  db_deletion_protection = false
  db_skip_final_snapshot = true
  db_multi_az            = false
  db_instance_class      = "db.t4g.medium"
}
